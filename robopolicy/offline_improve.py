"""Offline policy improvement of o2o (Uni-O4): the online pg term on the demo states, gated by an OPE.

    Q(s_i, a_i) <- G_i = sum_j gamma^j r_{i+j}           chunk-level Q of the demonstrator, Monte-Carlo
    repeat K rounds:
        pi_old <- pi;  a_m ~ pi_old(s), m = 1..M         chains sampled at demo states
        A(s, a_m) = Q(s, a_m) - mean_m Q(s, a_m)         the M samples' mean stands in for V(s)
        epochs of pg (PPO clip per decision, ratio to pi_old) [+ bc_coef * bc on the demos]
        OPE(pi) = mean_{s held out, m} Q(s, a_m ~ pi(s))  (same noise for old and new)
        keep pi if OPE(pi) > OPE(pi_old) + margin * std(G), else restore pi_old and stop
No round runs when Q explains less than ``offline_q_min_heldout_ev`` of the held-out episodes' returns.

Why Monte-Carlo and not fitted-Q/SARSA: o2o demos are whole episodes (``stop_on_success=false``), so
G_i is an unbiased sample of Q_beta(s_i, a_i) (the chunk a_i = the H actions executed from frame i,
then the demonstrator); regressing on it needs no target network and cannot diverge by bootstrapping
from Q at actions the narrow demo data never shows. Both would estimate Q of the demonstrator, not of
pi: the one-step approximation Uni-O4 also makes, which the clip, the few epochs and the gate keep local.

Shapes: obs {key: (N, ...)}, actions (N, H, A) env units (as ``load_demo_tensors`` gives them), reward,
episode (N,) in (episode, frame) order. Q reads observation.state only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robopolicy.algorithms.ppo import PPOConfig, minibatch_epochs
from robopolicy.encoders.state import mlp
from robopolicy.evaluate import seeded_noise
from robopolicy.normalizer import RunningMeanStd
from robopolicy.objective import BCTerm, MiniBatch, Objective, PPOClipTerm
from robopolicy.objective.value import explained_variance
from robopolicy.offline_critic import discounted_returns, fit_by_minibatches
from robopolicy.policy import Policy
from robopolicy.types import OBS_STATE, ActionSample, Obs


class ChunkQ(nn.Module):
    """Q(s, a): state (B, D) raw and a normalized chunk (B, H, A) -> (B,) in return units.

    Holds its own state statistics and return scale (fitted on the demos), so the policy's normalizer
    never changes and the net regresses a unit-scale target."""

    def __init__(self, state_dim: int, chunk: int, action_dim: int, hidden_sizes: list[int] | None = None):
        super().__init__()
        self.state_norm = RunningMeanStd(state_dim)
        self.net = mlp(state_dim + chunk * action_dim, hidden_sizes or [256, 256], "relu", out_dim=1)
        self.register_buffer("ret_mean", torch.zeros(()))
        self.register_buffer("ret_std", torch.ones(()))

    def forward(self, state: Tensor, actions: Tensor) -> Tensor:
        x = torch.cat([self.state_norm(state), actions.flatten(1)], dim=-1)
        return self.net(x).squeeze(-1) * self.ret_std + self.ret_mean

    def fit(self, state: Tensor, actions: Tensor, returns: Tensor, steps: int, lr: float, batch_size: int,
            generator: torch.Generator) -> dict[str, float]:
        """Adam regression of Q(state, actions) on ``returns`` (N,); returns the fit's metrics."""
        self.state_norm.update(state)
        self.ret_mean.fill_(float(returns.mean()))
        self.ret_std.fill_(float(returns.std(unbiased=False)) + 1e-6)
        def loss(idx: Tensor) -> Tensor:
            idx = idx.to(returns.device)
            return ((self(state[idx], actions[idx]) - returns[idx]) / self.ret_std).square().mean()

        fit_by_minibatches(loss, self.net.parameters(), returns.shape[0], steps, lr, batch_size, generator)
        with torch.no_grad():
            pred = self(state, actions)
        return {"offline/q_loss": float(((pred - returns) / self.ret_std).square().mean()),
                "offline/q_explained_variance": explained_variance(pred, returns)}


def _take(obs: Obs, idx: Tensor) -> Obs:
    return {k: v[idx] for k, v in obs.items()}


@torch.no_grad()
def sample_chains(policy: Policy, obs: Obs, m: int) -> tuple[Obs, ActionSample]:
    """M chains per state: (N*M, ...) obs, each state's M rows adjacent, and their sample."""
    rep = {k: v.repeat_interleave(m, dim=0) for k, v in obs.items()}
    return rep, policy.head.sample(policy.features(rep))


@torch.no_grad()
def ope(policy: Policy, q: ChunkQ, obs: Obs, m: int, seed: int) -> float:
    """mean over states and M samples of Q(s, a ~ pi(s)): the policy's value under Q (stochastic, as PPO acts)."""
    with seeded_noise(seed, obs[OBS_STATE].device):  # old and new policy scored with the same noise
        rep, sample = sample_chains(policy, obs, m)
    return float(q(rep[OBS_STATE], sample.actions).mean())


def split_episodes(episode: Tensor, holdout_frac: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(train, held-out) frame indices, split by whole episodes (overlapping chunks would leak across a
    frame split); one episode only: a random frame split."""
    episodes = torch.unique(episode.cpu())
    if len(episodes) >= 2:
        n_hold = min(len(episodes) - 1, max(1, round(holdout_frac * len(episodes))))
        held = episodes[torch.randperm(len(episodes), generator=generator)[:n_hold]]
        mask = torch.isin(episode.cpu(), held)
    else:
        n = episode.shape[0]
        mask = torch.zeros(n, dtype=torch.bool)
        mask[torch.randperm(n, generator=generator)[: max(1, round(holdout_frac * n))]] = True
    return (~mask).nonzero().squeeze(-1), mask.nonzero().squeeze(-1)


def improve_offline(policy: Policy, obs: Obs, actions: Tensor, reward: Tensor, episode: Tensor, config: PPOConfig,
                    seed: int = 0) -> list[dict[str, float]]:
    """Run the offline improvement phase on ``policy`` in place; one metrics dict per round (the first also has
    the Q fit's). A rejected round leaves the weights exactly as they were before it."""
    device = actions.device
    gen = torch.Generator().manual_seed(seed)
    train, held = (i.to(device) for i in split_episodes(episode, config.offline_holdout_frac, gen))
    returns = discounted_returns(reward.cpu(), episode.cpu(), config.gamma).to(device)
    chunk_norm = policy.scaler.from_env(actions).clamp(-1.0, 1.0)  # the head's units
    state = obs[OBS_STATE]
    q = ChunkQ(state.shape[-1], actions.shape[1], actions.shape[2]).to(device)
    q_metrics = q.fit(state[train], chunk_norm[train], returns[train], config.offline_q_steps,
                      config.critic_learning_rate or config.learning_rate, config.bc_batch_size, gen)
    q.requires_grad_(False)
    with torch.no_grad():  # the gate is only as good as Q on states it did not fit
        q_metrics["offline/q_explained_variance_heldout"] = explained_variance(
            q(state[held], chunk_norm[held]), returns[held])

    # The same terms as online: pg on the sampled chains, plus the bc term on the training demos when bc_coef > 0.
    terms = {"pg": (PPOClipTerm(config.clip_coef, config.normalize_advantage), 1.0)}
    if config.bc_coef > 0:
        from robopolicy.bc_run import DemoSampler  # bc_run imports train_run, which imports this module

        terms["bc"] = (BCTerm(DemoSampler(_take(obs, train), actions[train], config.bc_batch_size, seed)),
                       config.bc_coef)
    objective = Objective(terms)  # type: ignore[arg-type]
    params = list(policy.parameters())
    opt = torch.optim.Adam(params, lr=config.offline_learning_rate or config.learning_rate, eps=config.adam_eps)
    held_obs, m = _take(obs, held), config.offline_improve_samples
    margin = config.offline_ope_margin * float(q.ret_std)
    ope_old = ope(policy, q, held_obs, m, seed)
    if q_metrics["offline/q_explained_variance_heldout"] < config.offline_q_min_heldout_ev:
        return [q_metrics | {"offline/ope_old": ope_old, "offline/ope_new": ope_old, "offline/accepted": 0.0,
                             "offline/q_rejected": 1.0}]
    rows: list[dict[str, float]] = []
    for it in range(config.offline_improve_iters):
        old = {k: v.detach().clone() for k, v in policy.state_dict().items()}
        pick = train[torch.randperm(len(train), generator=gen)[: config.offline_improve_states].to(device)]
        rep, sample = sample_chains(policy, _take(obs, pick), m)
        with torch.no_grad():
            q_a = q(rep[OBS_STATE], sample.actions).view(-1, m)          # (n, M)
            adv = (q_a - q_a.mean(1, keepdim=True)).reshape(-1)          # (n*M,)
        zeros = torch.zeros_like(adv)
        batch = MiniBatch(obs=rep, trace=sample.trace, logp=sample.logp, advantages=adv, returns=zeros, value=zeros)
        history, stopped = minibatch_epochs(objective, policy, None, batch, opt, params, config,
                                            config.offline_improve_epochs, generator=gen)
        ope_new = ope(policy, q, held_obs, m, seed)
        accepted = ope_new > ope_old + margin
        row = {k: float(torch.stack([h[k] for h in history]).mean()) for k in (history[0] if history else {})}
        row |= {"offline/iteration": float(it), "offline/ope_old": ope_old, "offline/ope_new": ope_new,
                "offline/accepted": float(accepted), "offline/adv_std": float(adv.std()),
                "offline/minibatches": float(len(history)), "offline/early_stop": float(stopped)}
        rows.append((q_metrics | {"offline/q_rejected": 0.0} if it == 0 else {}) | row)
        if not accepted:
            policy.load_state_dict(old)
            break
        ope_old = ope_new
    return rows or [q_metrics]
