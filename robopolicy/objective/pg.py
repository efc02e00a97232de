"""`pg`: PPO clipped surrogate per inner decision, and the entropy bonus.

    r_{n,s} = exp(log pi(d_{n,s}) - log pi_old(d_{n,s}))           ratio per decision s
    L       = -mean_{n,s} min(r A_n, clip(r, 1 - eps, 1 + eps) A_n)
A policy step's advantage A_n is shared by all its S decisions (denoising steps, tokens).
With ``clip_coef_first`` the clip differs per decision, as DPPO's per-denoising-step clip:
    eps_s = eps_1 + (eps - eps_1) (exp(rate u_s) - 1) / (exp(rate) - 1),   u_s = s / (S - 1)
so the first (noisiest) decision moves least and the last, which sets the action, moves most.
``approx_kl`` is the mean k3 KL estimate per decision (what ``target_kl`` compares); ``approx_kl_step`` sums it over
a policy step's decisions, the KL of the whole chain, comparable across heads.
With ``extras["pg_mask"]`` (N,) in the minibatch, the mean (and the advantage normalization) runs over the steps
whose mask is 1 only: steps whose executed action is not their stored sample contribute nothing.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from robopolicy.objective.base import ForwardCache, ObjectiveTerm


class PPOClipTerm(ObjectiveTerm):
    name = "pg"

    def __init__(self, clip_coef: float = 0.2, normalize_advantage: bool = True,
                 clip_coef_first: float | None = None, clip_schedule_rate: float = 3.0):
        super().__init__()
        self.clip_coef, self.normalize_advantage = clip_coef, normalize_advantage
        self.clip_coef_first, self.clip_schedule_rate = clip_coef_first, clip_schedule_rate
        self._schedules: dict[tuple[int, torch.dtype, torch.device], Tensor] = {}  # built once, not per minibatch

    def clip_per_decision(self, s: int, like: Tensor | None = None) -> float | Tensor:
        """Clip epsilon for each of S decisions: a float, or (S,) rising from clip_coef_first to clip_coef
        (with ``like``'s dtype and device)."""
        if self.clip_coef_first is None or s == 1:
            return self.clip_coef
        dtype, device = (like.dtype, like.device) if like is not None else (torch.float32, torch.device("cpu"))
        key = (s, dtype, device)
        if key not in self._schedules:
            u = torch.linspace(0.0, 1.0, s, dtype=torch.float64)
            rise = torch.expm1(self.clip_schedule_rate * u) / math.expm1(self.clip_schedule_rate)
            eps = self.clip_coef_first + (self.clip_coef - self.clip_coef_first) * rise
            self._schedules[key] = eps.to(dtype=dtype, device=device)
        return self._schedules[key]

    def forward(self, cache: ForwardCache) -> tuple[Tensor, dict[str, Tensor]]:
        mb = cache.mb
        adv = mb.advantages
        mask = mb.extras.get("pg_mask")                      # (N,) or None: every step
        if self.normalize_advantage and adv.numel() > 1:
            if mask is None:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            elif mask.sum() > 1:
                kept = adv[mask > 0]
                adv = (adv - kept.mean()) / (kept.std() + 1e-8)
        log_ratio = cache.logp - mb.logp                    # (N, S)
        ratio = log_ratio.exp()
        neg_adv = -adv.unsqueeze(-1)                         # (N, 1) broadcast over S
        # -min(r A, clip(r) A) = max(r (-A), clip(r) (-A)). Where the clipped branch is the max, clip(r) is at a
        # bound (or equals r: a tie) and passes no gradient that the unclipped branch would not: picking the branch
        # with ``where`` gives the same values and gradients as min/clamp, with fewer autograd nodes.
        loss = ratio * neg_adv
        eps = self.clip_per_decision(ratio.shape[-1], ratio)
        with torch.no_grad():
            clipped = torch.clamp(ratio, 1 - eps, 1 + eps) * neg_adv
        loss = torch.where(loss >= clipped, loss, clipped)
        if mask is not None:
            loss = loss * mask.unsqueeze(-1) * (mask.numel() / mask.sum().clamp(min=1.0))
        with torch.no_grad():
            # k3 estimator of KL(old || new): E[(r - 1) - log r], low variance, always >= 0.
            r1 = ratio - 1
            approx_kl = (r1 - log_ratio).mean()
            # The chain's KL is the sum of its S decisions' KLs: the same meaning for every head.
            approx_kl_step = approx_kl * log_ratio.shape[-1]
            clip_frac = (r1.abs() > eps).float().mean()
            ratio_mean = ratio.mean()
        return loss.mean(), {"approx_kl": approx_kl, "approx_kl_step": approx_kl_step, "clip_frac": clip_frac,
                             "ratio_mean": ratio_mean}


class EntropyTerm(ObjectiveTerm):
    """-H(pi): minimizing it with a positive weight (ent_coef) rewards exploration."""

    name = "entropy"

    def forward(self, cache: ForwardCache) -> tuple[Tensor, dict[str, Tensor]]:
        ent = cache.entropy.sum(-1).mean()
        return -ent, {"entropy": ent.detach()}
