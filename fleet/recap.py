"""RECAP-style advantage-conditioned policy from fleet data (after pi*0.6, Physical Intelligence 2025).

    value      V(s): regressed on the lambda-returns of every rollout (reward standardized by running statistics)
    advantage  A_t = GAE(r, V), lambda-returns bootstrapped at episode ends and rollout cuts
    indicator  I_t = 1[A_t > eps], eps the (1 - positive_fraction) quantile of A over the robots' own steps of the
               rollout; every intervention step (the teleoperator's correction) is labelled I_t = 1
    policy     pi(a | s, I): the head's imitation loss on *all* fleet steps aggregated so far (robots' own actions
               and the teleoperator's), I an extra input next to the state
    deploy     act with I = 1 ("advantage positive")

Unlike advantage-weighted regression, nothing is thrown away or down-weighted: bad actions are imitated too, but
under I = 0, so the policy learns what "positive" means by contrast. pi*0.6 also drops the indicator at random to
allow classifier-free guidance; this binary version does not.

The indicator is one more state input. Robots and the wire stay as they are: the learner trains a policy with
state_dim D + 1 and publishes a plain policy of state_dim D in which I = 1 is folded into the bias of the first
layer (exact: the indicator's normalizer statistics stay at mean 0, var 1, and the first layer is linear in it).
Needs a state-only encoder (the first layer of the state MLP reads the raw normalized state).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from robopolicy.advantages import gae
from robopolicy.critic import CriticConfig, ValueCritic
from robopolicy.normalizer import RunningMeanStd
from robopolicy.policy import Policy, PolicyConfig
from robopolicy.types import OBS_STATE, Rollout


@dataclass
class RecapConfig:
    learning_rate: float = 3e-4
    """Adam step size of the conditioned policy."""
    critic_learning_rate: float = 1e-3
    """Adam step size of the value function."""
    gamma: float = 0.99
    """Discount of the value function."""
    gae_lambda: float = 0.95
    """GAE lambda of the advantage."""
    positive_fraction: float = 0.3
    """Share of the robots' own steps labelled positive (pi*0.6 sets its threshold so that ~30% are)."""
    value_epochs: int = 5
    """Passes of value regression over each rollout."""
    policy_steps: int = 200
    """Imitation gradient steps on the aggregate per update (bounded cost however large the aggregate grows)."""
    batch_size: int = 256
    """Minibatch size of both regressions."""


def _first_layer(policy: Policy) -> nn.Linear:
    """The one linear layer that reads the normalized state (the first layer of the state MLP)."""
    enc = policy.config.encoder
    if enc.image.cameras or enc.language.kind != "none":
        raise ValueError("train.algo=recap: needs a state-only policy encoder (no cameras, no language)")
    layers = [m for m in policy.encoder.modules() if isinstance(m, nn.Linear)
              and m.in_features == policy.config.state_dim]
    if len(layers) != 1:
        raise ValueError(f"train.algo=recap: expected one linear layer reading the state (in_features="
                         f"{policy.config.state_dim}), found {len(layers)}; RECAP needs a state MLP encoder")
    return layers[0]


def conditioned_policy(policy: Policy) -> Policy:
    """A copy of ``policy`` with one more state input, the indicator I; its weights start at 0, so the copy acts
    exactly as ``policy`` whatever I is."""
    D = policy.config.state_dim
    cfg = PolicyConfig.from_dict(asdict(policy.config) | {"state_dim": D + 1})
    wide = Policy(cfg)
    src = policy.state_dict()
    first = _first_layer(policy)
    first_name = next(n for n, m in policy.named_modules() if m is first)
    out = {}
    for key, dst in wide.state_dict().items():
        val = src[key]
        if key == f"{first_name}.weight":
            val = torch.cat([val, torch.zeros(val.shape[0], 1)], dim=1)
        elif val.shape != dst.shape:  # normalizer statistics of the state: the indicator is read as it is
            fill = 1.0 if key.endswith(".var") else 0.0
            val = torch.cat([val, torch.full((1,), fill)])
        out[key] = val
    wide.load_state_dict(out)
    for m in wide.modules():
        if isinstance(m, RunningMeanStd):
            m.refresh()
    return wide.eval()


@torch.no_grad()
def fold_indicator(wide: Policy, deployed: Policy, indicator: float = 1.0) -> None:
    """Write ``wide`` with I fixed to ``indicator`` into ``deployed`` (state_dim D): its outputs on a state s equal
    wide's on [s, I]."""
    D = deployed.config.state_dim
    probe = torch.zeros(1, D + 1)
    probe[0, D] = indicator
    i_norm = wide.normalizer({OBS_STATE: probe})[OBS_STATE][0, D]  # I as the first layer sees it
    first = _first_layer(wide)
    first_name = next(n for n, m in wide.named_modules() if m is first)
    state = {}
    for key, val in wide.state_dict().items():
        if key == f"{first_name}.weight":
            val = val[:, :D]
        elif key == f"{first_name}.bias":
            val = val + first.weight[:, D] * i_norm
        elif val.ndim == 1 and val.shape[0] == D + 1 and key.startswith("normalizer."):
            val = val[:D]
        state[key] = val
    deployed.load_state_dict(state)
    for m in deployed.modules():
        if isinstance(m, RunningMeanStd):
            m.refresh()


def advantage_indicator(adv: Tensor, intervention: Tensor, positive_fraction: float) -> Tensor:
    """I (bool, same shape as ``adv``): the top ``positive_fraction`` of the robots' own steps by advantage, and
    every intervention step."""
    own = adv[~intervention]
    if own.numel() == 0:
        return torch.ones_like(intervention)
    eps = torch.quantile(own.float(), 1.0 - positive_fraction)
    return (adv > eps) | intervention


def with_indicator(state: Tensor, indicator: Tensor) -> Tensor:
    """(N, D), (N,) -> (N, D + 1)."""
    return torch.cat([state, indicator.to(state.dtype).unsqueeze(-1)], dim=-1)


class Recap:
    """``update(rollout)`` trains V and pi(a | s, I), then folds I = 1 into ``policy`` (the published one)."""

    def __init__(self, policy: Policy, config: RecapConfig):
        self.policy, self.config = policy, config
        self.wide = conditioned_policy(policy)
        self.critic = ValueCritic(policy.config.state_dim, CriticConfig())
        self.optimizer = torch.optim.Adam(self.wide.parameters(), lr=config.learning_rate)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_learning_rate)
        self.reward_stats = RunningMeanStd(1)
        self.obs: list[Tensor] = []      # aggregate: (N, D + 1) state with indicator
        self.actions: list[Tensor] = []  # (N, H, A) in [-1, 1]

    def value(self, state: Tensor) -> Tensor:
        return self.critic({OBS_STATE: self.policy.normalizer({OBS_STATE: state})[OBS_STATE]})

    def update(self, rollout: Rollout, progress: float = 0.0) -> dict[str, float]:
        c = self.config
        s, s_next = rollout.obs[OBS_STATE], rollout.final_obs[OBS_STATE]  # (T, B, D)
        T, B = rollout.reward.shape
        self.reward_stats.update(rollout.reward.reshape(-1, 1))
        reward = (rollout.reward - self.reward_stats.mean) * self.reward_stats.inv_std
        done = rollout.terminated | rollout.truncated
        with torch.no_grad():  # final_obs[t] is the state step t reached: bootstrap at ends and cuts alike
            v, next_v = self.value(s), self.value(s_next)
        gamma = c.gamma ** rollout.chunk_steps.to(v.dtype)  # a policy step of k env steps is discounted by gamma^k
        adv, ret = gae(reward, v, next_v, rollout.terminated, done, gamma, c.gae_lambda)
        b_s, b_ret = s.reshape(T * B, -1), ret.reshape(-1)
        value_losses = []
        for _ in range(c.value_epochs):
            for idx in torch.randperm(T * B).split(c.batch_size):
                loss = (self.value(b_s[idx]) - b_ret[idx]).square().mean()
                self.critic_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.critic_optimizer.step()
                value_losses.append(loss.item())
        inter = rollout.masks["intervention"]
        positive = advantage_indicator(adv, inter, c.positive_fraction)
        self.obs.append(with_indicator(b_s, positive.reshape(-1)))
        self.actions.append(self.policy.scaler.from_env(rollout.actions.reshape(T * B, *rollout.actions.shape[2:]))
                            .clamp(-1.0, 1.0))
        obs, act = torch.cat(self.obs), torch.cat(self.actions)
        self.obs, self.actions = [obs], [act]
        losses = []
        self.wide.train()
        for _ in range(c.policy_steps):
            idx = torch.randint(len(obs), (min(c.batch_size, len(obs)),))
            loss = self.wide.head.imitation_loss(self.wide.features({OBS_STATE: obs[idx]}), act[idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.wide.parameters(), 1.0)
            self.optimizer.step()
            losses.append(loss.item())
        self.wide.eval()
        fold_indicator(self.wide, self.policy, 1.0)
        own = ~inter
        return {"recap/labels": float(len(obs)), "recap/positive_own": float(positive[own].float().mean())
                if own.any() else 0.0, "recap/interventions": float(inter.sum()), "loss/value": float(np.mean(
                    value_losses)), "loss/bc": float(np.mean(losses))}
