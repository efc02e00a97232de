"""PPO: the shared objective on on-policy rollouts, for every head.

    L = pg_coef L_pg + ent_coef L_entropy + vf_coef L_value            (PPO)
      + bc_coef_i L_bc + anchor_coef L_anchor + distill_coef L_distill  (fine-tuning terms)
with bc_coef_i = bc_coef * bc_decay ** i after i updates (DAPG). ``algo=distill`` is this class
with pg_coef = vf_coef = 0 and distill_coef = 1: on-policy distillation is PPO's loop without
rewards.

One update:
    1. critic values of every visited and reached state in two batched passes,
    2. (optional) return-based reward scaling, GAE -> advantages and returns,
    3. n_epochs x shuffled minibatches of the weighted objective, global grad-norm clip,
       early stop when the approximate KL to the behaviour policy exceeds 1.5 * target_kl.
During the first ``critic_warmup_updates`` updates only the value term trains: a fresh critic
on a pretrained actor would otherwise feed it noise advantages (and undo the pretraining).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from robopolicy.advantages import gae
from robopolicy.algorithms.fast_step import adam_step_fn, clip_grad_norm_fn, zero_grad_fn
from robopolicy.algorithms.ppo_config import PPOConfig  # re-exported: PPO and its config import together
from robopolicy.critic import ValueCritic
from robopolicy.normalizer import ReturnNormalizer
from robopolicy.objective import (
    BCTerm,
    DAggerTerm,
    DivergenceTerm,
    EntropyTerm,
    EstimateTerm,
    ForwardCache,
    MiniBatch,
    Objective,
    ObjectiveTerm,
    PPOClipTerm,
    ValueTerm,
)
from robopolicy.objective.bc import DemoBatches
from robopolicy.objective.value import explained_variance
from robopolicy.policy import Policy, freeze_parameters
from robopolicy.types import Obs, Rollout

EPOCH_GATHER_MAX_BYTES = 256 * 2**20
"""minibatch_epochs copies a shuffled batch once per epoch when it is at most this large."""


def flatten_time(x: Tensor) -> Tensor:
    """(T, B, ...) -> (T*B, ...)."""
    return x.reshape(-1, *x.shape[2:])


def flatten_obs(obs: Obs) -> Obs:
    return {k: flatten_time(v) for k, v in obs.items()}


class PPO:
    """The on-policy algorithm. ``teacher`` (distill), ``reference`` (anchor) and ``demos`` (bc) are
    needed only when their coefficient is non-zero."""

    def __init__(
        self,
        policy: Policy,
        critic: ValueCritic,
        config: PPOConfig,
        num_envs: int,
        total_steps: int = 0,
        teacher: Policy | None = None,
        reference: Policy | None = None,
        demos: DemoBatches | None = None,
    ):
        self.policy, self.critic, self.config = policy, critic, config
        self.total_steps = total_steps
        critic_lr = config.critic_learning_rate or config.learning_rate
        self.optimizer = torch.optim.Adam(
            [
                {"params": freeze_parameters(policy, config.freeze), "lr": config.learning_rate,
                 "base_lr": config.learning_rate},
                {"params": list(critic.parameters()), "lr": critic_lr, "base_lr": critic_lr},
            ],
            eps=config.adam_eps,
            fused=True,  # one kernel for all parameters: the per-tensor loop dominates small MLPs on CPU
        )
        self.objective = Objective(objective_terms(config, teacher, reference, demos, policy))
        self.critic_objective = Objective({"value": (ValueTerm(config.clip_vf), 1.0)})
        self.return_normalizer = ReturnNormalizer(num_envs, config.gamma) if config.normalize_reward else None
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.num_updates = 0
        self.min_std_start: float | None = None
        if config.min_std_final is not None:
            if not hasattr(policy.head, "set_min_std"):
                raise ValueError(f"algo.min_std_final: {type(policy.head).__name__} has no exploration floor to "
                                 "anneal (the diffusion head has one)")
            self.min_std_start = float(policy.head.config.min_std)

    @torch.no_grad()
    def prepare(self, rollout: Rollout) -> MiniBatch:
        """Values, GAE and flattening: the whole rollout as one (T*B) batch."""
        cfg = self.config
        T, B = rollout.num_steps, rollout.num_envs
        norm = self.policy.normalizer
        obs = flatten_obs(rollout.obs)
        # Statistics are fixed during an update, so normalize once instead of per minibatch.
        norm_obs = norm(obs)
        value = self.critic(norm_obs).view(T, B)
        # V of the state each step reached: obs[t+1] inside an episode, the pre-reset obs at its end.
        next_value = self.critic(norm(flatten_obs(rollout.final_obs))).view(T, B)
        rollout.value, rollout.next_value = value, next_value
        reward = rollout.reward
        if self.return_normalizer is not None:
            reward = self.return_normalizer(reward, rollout.done)
        gamma = cfg.gamma ** rollout.chunk_steps.to(value.dtype)
        adv, returns = gae(reward, value, next_value, rollout.terminated, rollout.done, gamma, cfg.gae_lambda)
        if rollout.advantages is not None:  # the source estimated them (group-relative); the critic keeps GAE returns
            adv = rollout.advantages.to(value)
        # Steps whose executed action is not the stored sample (a teleoperator's, for a head whose trace cannot be
        # inverted) are left out of the pg term; they still train the critic.
        extras = {"pg_mask": flatten_time(rollout.masks["pg"]).to(value)} if "pg" in rollout.masks else {}
        return MiniBatch(
            obs=obs,
            norm_obs=norm_obs,
            trace=flatten_time(rollout.trace),
            logp=flatten_time(rollout.logp),
            advantages=flatten_time(adv),
            returns=flatten_time(returns),
            value=flatten_time(value),
            extras=extras,
        )

    def _set_lr(self, progress: float) -> None:
        cfg = self.config
        frac = max(0.0, 1.0 - progress) if cfg.anneal_lr else 1.0
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * frac
        if cfg.actor_lr_warmup_updates > 0:  # group 0 is the actor; counted from its first update
            actor_updates = max(0, self.num_updates - cfg.critic_warmup_updates)
            self.optimizer.param_groups[0]["lr"] *= min(1.0, (actor_updates + 1) / cfg.actor_lr_warmup_updates)

    def update(self, rollout: Rollout, progress: float = 0.0) -> dict[str, float]:
        """One PPO update on a rollout; ``progress`` in [0, 1] drives LR annealing."""
        cfg = self.config
        batch = self.prepare(rollout)
        self._set_lr(progress)
        warmup = self.num_updates < cfg.critic_warmup_updates
        objective = self.critic_objective if warmup else self.objective
        history, stopped_early = minibatch_epochs(objective, self.policy, self.critic, batch, self.optimizer,
                                                  self.params, cfg, cfg.n_epochs)
        count = len(history)
        self.num_updates += 1
        if "bc" in self.objective.weights:
            self.objective.weights["bc"] = cfg.bc_coef * cfg.bc_decay**self.num_updates
        out = {k: float(torch.stack([h[k] for h in history]).mean()) for k in (history[0] if history else {})}
        if self.min_std_start is not None:  # the next rollout acts with the new floor
            out["ppo/min_std"] = self._set_min_std(progress)
        with torch.no_grad():
            out["value/explained_variance"] = explained_variance(self.critic(batch.norm_obs), batch.returns)
            out["ppo/behaviour_neg_logp"] = behaviour_neg_logp(batch)
        out.update(
            {
                "ppo/minibatches": float(count),
                "ppo/early_stop": float(stopped_early),
                "ppo/lr": self.optimizer.param_groups[0]["lr"],
                "ppo/log_std_mean": _mean_log_std(self.policy),
                "ppo/critic_warmup": float(warmup),
                **({"ppo/bc_coef": self.objective.weights["bc"]} if "bc" in self.objective.weights else {}),
            }
        )
        return out

    def _set_min_std(self, progress: float) -> float:
        start, final = self.min_std_start, self.config.min_std_final
        value = start + (final - start) * min(max(progress, 0.0), 1.0)
        self.policy.head.set_min_std(value)
        self.policy.config.head_options["min_std"] = value  # checkpoints carry the floor the policy acts with
        return value

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"optimizer": self.optimizer.state_dict(), "num_updates": self.num_updates}
        if self.min_std_start is not None:
            state["min_std"] = {"start": self.min_std_start, "now": float(self.policy.head.config.min_std)}
        if self.return_normalizer is not None:
            state["return_normalizer"] = self.return_normalizer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.num_updates = int(state["num_updates"])
        if self.min_std_start is not None and "min_std" in state:  # a resumed run continues the schedule
            self.min_std_start = state["min_std"]["start"]
            self.policy.head.set_min_std(state["min_std"]["now"])
            self.policy.config.head_options["min_std"] = state["min_std"]["now"]
        if self.return_normalizer is not None and "return_normalizer" in state:
            self.return_normalizer.load_state_dict(state["return_normalizer"])


def behaviour_neg_logp(batch: MiniBatch) -> float:
    """Mean over the rollout of -log pi(chain) summed over a policy step's decisions: a Monte-Carlo estimate of
    the acting policy's entropy per step (differential for Gaussian chains, exact-in-expectation for tokens). It
    shows whether exploration collapses as PPO sharpens the policy; steps left out of pg (pg_mask) are skipped."""
    neg_logp = -batch.logp.sum(-1)
    mask = batch.extras.get("pg_mask")
    if mask is None:
        return float(neg_logp.mean())
    return float((neg_logp * mask).sum() / mask.sum().clamp(min=1.0))


def minibatch_epochs(
    objective: Objective,
    policy: Policy,
    critic: ValueCritic | None,
    batch: MiniBatch,
    optimizer: torch.optim.Optimizer,
    params: list[Tensor],
    config: PPOConfig,
    epochs: int,
    generator: torch.Generator | None = None,
) -> tuple[list[dict[str, Tensor]], bool]:
    """``epochs`` x shuffled minibatches of ``objective`` with a global grad-norm clip; stops early once the
    approx KL to the behaviour policy exceeds 1.5 * target_kl. Shared by the online update and the offline
    improvement phase (robopolicy/offline_improve.py), so both take the same steps. Returns (metrics, stopped)."""
    n = batch.advantages.shape[0]
    history: list[dict[str, Tensor]] = []
    step, zero_grad = adam_step_fn(optimizer), zero_grad_fn(optimizer)
    clip = clip_grad_norm_fn(params, config.max_grad_norm)
    # One gather per field and epoch, minibatches are then views: a gather per field and minibatch costs more
    # than the rows it moves at PPO's batch sizes. Very large (image) batches keep per-minibatch gathers.
    gather_epoch = batch.nbytes() <= EPOCH_GATHER_MAX_BYTES
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator).to(batch.advantages.device)
        shuffled = batch.index(perm) if gather_epoch else batch
        for start in range(0, n, config.batch_size):
            stop = start + config.batch_size
            mb = shuffled.slice(start, stop) if gather_epoch else batch.index(perm[start:stop])
            loss, metrics = objective(ForwardCache(policy, critic, mb))
            kl = metrics.get("pg/approx_kl")
            if config.target_kl is not None and kl is not None and float(kl) > 1.5 * config.target_kl:
                return history, True
            zero_grad()
            loss.backward()
            metrics["grad_norm"] = clip()
            step()
            history.append(metrics)
    return history, False


def objective_terms(
    config: PPOConfig, teacher: Policy | None, reference: Policy | None, demos: DemoBatches | None,
    policy: Policy | None = None,
) -> dict[str, tuple[ObjectiveTerm, float]]:
    """The weighted terms ``config`` asks for; a term whose input is missing is a ValueError naming it."""
    terms: dict[str, tuple[ObjectiveTerm, float]] = {
        # Group advantages are normalized already (and 0 on masked steps): no per-minibatch renormalization.
        "pg": (PPOClipTerm(config.clip_coef, config.normalize_advantage and config.advantage == "gae",
                           config.clip_coef_first, config.clip_schedule_rate), config.pg_coef),
        "entropy": (EntropyTerm(), config.ent_coef),
        "value": (ValueTerm(config.clip_vf), config.vf_coef),
    }
    if config.distill_coef > 0:
        if teacher is None:
            raise ValueError("algo.distill_coef > 0 needs a teacher policy (teacher=<policy folder>)")
        term = DAggerTerm(teacher) if config.distill_kind == "dagger" else DivergenceTerm(teacher, config.distill_kind)
        terms["distill"] = (term, config.distill_coef)
    if config.anchor_coef > 0:
        if reference is None:
            raise ValueError("algo.anchor_coef > 0 needs the pretrained policy (init_policy=<policy folder>)")
        terms["anchor"] = (DivergenceTerm(reference, config.anchor_kind, name="anchor"), config.anchor_coef)  # type: ignore[arg-type]
    if config.bc_coef > 0:
        if demos is None:
            raise ValueError("algo.bc_coef > 0 needs demonstrations (dataset=<LeRobotDataset folder>)")
        terms["bc"] = (BCTerm(demos), config.bc_coef)
    if policy is not None and policy.encoder.estimator is not None and config.estimate_coef > 0:
        terms["estimate"] = (EstimateTerm(), config.estimate_coef)
    return terms


def _mean_log_std(policy: Policy) -> float:
    log_std = getattr(policy.head, "log_std", None)
    return float(log_std.detach().mean()) if isinstance(log_std, Tensor) else float("nan")
