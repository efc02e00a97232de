"""BC: imitation learning from demonstrations with any head's ``imitation_loss``.

One update on a minibatch of demo chunks:
    a_norm = scaler.from_env(a)                 env units -> [-1, 1] per dimension
    loss   = head.imitation_loss(features(obs), a_norm)   NLL (gaussian), DDPM eps-MSE (diffusion),
                                                           rectified-flow MSE (flow), token CE (tokens)
    AdamW step with a global grad-norm clip, then the EMA of the weights:
    theta_ema <- d theta_ema + (1 - d) theta,   d = min(ema_decay, (1 + n) / (10 + n))
(the warm-up of d, as in diffusion_policy / LeRobot, keeps early EMA weights from being
dominated by the random init). The EMA copy is what is evaluated and saved.

Padded steps (past an episode's end, ``action_is_pad``) are trained on as LeRobot does: the
target there is the episode's last real action ("stay put"), see ``fill_padded_actions``.
Observation statistics come from the dataset (``set_obs_stats``), not from a running update.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from robopolicy.objective.estimate import estimate_loss
from robopolicy.policy import Policy, freeze_parameters
from robopolicy.types import OBS_STATE, Obs


@dataclass
class BCConfig:
    name: str = "bc"
    """Algorithm name (the algo= config group option)."""
    steps: int = 50_000
    """Gradient steps of the whole run (algo=bc ignores total_steps, which counts env steps)."""
    batch_size: int = 256
    """Demo chunks per gradient step."""
    learning_rate: float = 1e-4
    """AdamW peak step size."""
    weight_decay: float = 1e-6
    """AdamW decoupled weight decay."""
    grad_clip: float = 10.0
    """Global gradient-norm clip."""
    ema_decay: float = 0.999
    """EMA decay of the weights that are evaluated and saved; 0 disables the EMA."""
    lr_schedule: str = "cosine"
    """constant or cosine (decay to 0 over ``steps``), both after a linear warm-up."""
    warmup_steps: int = 500
    """Linear learning-rate warm-up from 0, in gradient steps."""
    eval_every: int = 5_000
    """Gradient steps between evaluations in the env (0: only at the end)."""
    checkpoint_every: int = 0
    """Gradient steps between checkpoints (0: only the final one)."""
    log_every: int = 100
    """Gradient steps between rows of metrics.jsonl (averages over the interval)."""
    freeze: list[str] = field(default_factory=list)
    """Parameter-name prefixes kept fixed (e.g. [head, encoder.net]: a camera student warm-started from its
    teacher trains only its camera estimator); [] trains everything."""
    estimate_coef: float = 1.0
    """Weight of the estimate loss of a camera student (policy.encoder.estimate_privileged) on the demos'
    observation.privileged, added to the imitation loss. Ignored for other policies."""
    imitation_coef: float = 1.0
    """Weight of the imitation loss. 0 trains a camera student's estimator on the estimate loss alone (still
    logged as loss/bc): with its teacher's layers frozen, demos those layers cannot fit (noisy, off-path) would
    otherwise bend the estimate away from the true state to fit the labels."""
    obs_noise: float = 0.0
    """Std of Gaussian noise added to the normalized ``observation.state`` of each BC sample (in dataset stds),
    so the policy also learns the demo's action in states near the demo's; 0 trains on the demo states only."""

    def __post_init__(self) -> None:
        checks = {
            "steps": self.steps >= 1, "batch_size": self.batch_size >= 1, "learning_rate": self.learning_rate >= 0,
            "weight_decay": self.weight_decay >= 0, "grad_clip": self.grad_clip > 0,
            "ema_decay": 0 <= self.ema_decay < 1, "lr_schedule": self.lr_schedule in ("constant", "cosine"),
            "warmup_steps": self.warmup_steps >= 0, "eval_every": self.eval_every >= 0,
            "checkpoint_every": self.checkpoint_every >= 0, "log_every": self.log_every >= 1,
            "estimate_coef": self.estimate_coef >= 0, "imitation_coef": self.imitation_coef >= 0,
            "obs_noise": self.obs_noise >= 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            k = bad[0]
            raise ValueError(f"algo.{k}: invalid value {getattr(self, k)!r} "
                             "(steps, batch_size, log_every >= 1; learning_rate, weight_decay, warmup_steps, "
                             "eval_every, checkpoint_every, obs_noise >= 0; grad_clip > 0; 0 <= ema_decay < 1; "
                             "lr_schedule in {constant, cosine})")


def fill_padded_actions(actions: Tensor, is_pad: Tensor | None) -> Tensor:
    """(N, H, A) chunks with every padded step replaced by the last real step of its chunk.

    LeRobot pads by repeating the episode's final action; doing it here makes the target
    independent of what a loader writes into padded slots.
    """
    if is_pad is None or not bool(is_pad.any()):
        return actions
    steps = torch.arange(actions.shape[1], device=actions.device).expand_as(is_pad)
    last_real = torch.where(is_pad, -1, steps).amax(1).clamp(min=0)  # (N,)
    src = torch.where(is_pad, last_real.unsqueeze(1), steps)  # (N, H)
    return actions.gather(1, src.unsqueeze(-1).expand_as(actions))


@torch.no_grad()
def set_obs_stats(policy: Policy, stats: dict[str, dict[str, Tensor]] | None, obs: Obs) -> None:
    """Set the policy's observation normalizer from dataset statistics (mean, std), or from
    ``obs`` itself where the dataset carries none; count = number of samples."""
    if not policy.normalizer.enabled:
        return
    for key, name in policy.normalizer._names.items():
        if key not in obs:
            continue
        x = obs[key].reshape(-1, obs[key].shape[-1]).double()
        entry = (stats or {}).get(key, {})
        mean = torch.as_tensor(entry["mean"]).double().flatten() if "mean" in entry else x.mean(0)
        std = torch.as_tensor(entry["std"]).double().flatten() if "std" in entry else x.std(0, unbiased=False)
        rms = policy.normalizer.stats[name]
        if mean.shape != rms.mean.shape or std.shape != rms.mean.shape:
            raise ValueError(f"dataset stats for {key}: mean {tuple(mean.shape)} / std {tuple(std.shape)}, "
                             f"expected {tuple(rms.mean.shape)}")
        rms.mean.copy_(mean.to(rms.mean))
        rms.var.copy_(std.square().to(rms.var))
        rms.count.fill_(float(x.shape[0]))
        rms.refresh()


class BC:
    """AdamW on ``policy.head.imitation_loss`` plus an EMA copy of the policy (``eval_policy``)."""

    def __init__(self, policy: Policy, config: BCConfig):
        self.policy, self.config = policy, config
        if config.imitation_coef == 0 and (policy.encoder.estimator is None or config.estimate_coef == 0):
            raise ValueError("bc: nothing to train: algo.imitation_coef=0 needs a camera student "
                             "(policy.encoder.estimate_privileged) and algo.estimate_coef > 0")
        self.trained = trained = freeze_parameters(policy, config.freeze)
        self.optimizer = torch.optim.AdamW(trained, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.ema: Policy | None = None
        if config.ema_decay > 0:
            self.ema = copy.deepcopy(policy).requires_grad_(False)
        self.num_updates = 0

    @property
    def eval_policy(self) -> Policy:
        """The weights to evaluate and save: the EMA copy, or the raw policy without EMA."""
        return self.ema if self.ema is not None else self.policy

    def _lr_factor(self, step: int) -> float:
        cfg = self.config
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "constant":
            return 1.0
        # Cosine from 1 at the end of warm-up to 0 at ``steps``.
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    def sync_ema(self) -> None:
        """Copy the raw weights into the EMA (after stats are set, or on a fresh start)."""
        if self.ema is not None:
            self.ema.load_state_dict(self.policy.state_dict())

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        """batch: ``obs`` (dict of (B, ...)), ``actions`` (B, H, A) in env units (padding filled)."""
        policy = self.policy
        policy.train()
        # Demo actions outside the env's bounds are clamped: heads model [-1, 1].
        target = policy.scaler.from_env(batch["actions"]).clamp(-1.0, 1.0)
        norm_obs = policy.normalizer(batch["obs"])
        if self.config.obs_noise > 0 and OBS_STATE in norm_obs:
            state = norm_obs[OBS_STATE]
            norm_obs = {**norm_obs, OBS_STATE: state + self.config.obs_noise * torch.randn_like(state)}
        feat, estimate = policy.encoder.features_and_estimate(norm_obs, augment=True)
        if self.config.imitation_coef > 0:
            imitation = policy.head.imitation_loss(feat, target)
            loss = self.config.imitation_coef * imitation
        else:
            with torch.no_grad():
                imitation = policy.head.imitation_loss(feat.detach(), target)
            loss = feat.new_zeros(())
        metrics: dict[str, float] = {}
        if estimate is not None and self.config.estimate_coef > 0:
            est = estimate_loss(estimate, norm_obs, policy.encoder.estimate_index)
            metrics["loss/estimate"] = est.item()
            loss = loss + self.config.estimate_coef * est
        if not torch.isfinite(loss):
            raise FloatingPointError(f"bc: imitation loss is {loss.item()} at update {self.num_updates}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.trained, self.config.grad_clip)
        self.optimizer.step()
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        self.num_updates += 1
        self._update_ema()
        return {"loss/bc": imitation.item(), "bc/grad_norm": float(grad_norm), "bc/lr": lr, **metrics}

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema is None:
            return
        decay = min(self.config.ema_decay, (1 + self.num_updates) / (10 + self.num_updates))
        for p_ema, p in zip(self.ema.parameters(), self.policy.parameters()):
            p_ema.lerp_(p, 1.0 - decay)  # theta_ema += (1 - d) (theta - theta_ema)
        for b_ema, b in zip(self.ema.buffers(), self.policy.buffers()):
            b_ema.copy_(b)  # normalizer stats, action bounds: not averaged

    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.state_dict(), "ema": None if self.ema is None else self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"] if state.get("ema") is not None else state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.num_updates = int(state["num_updates"])

