"""Gaussian action head: the baseline (S = 1, trace = pre-squash sample).

    pre ~ N(mu(feat), sigma^2)          (B, H, A)
    a   = tanh(pre)  or  clip(pre, -1, 1)

Log-prob of the whole chunk is one decision:
    log p(a) = sum_{h,a} [ log N(pre; mu, sigma) - log|d a / d pre| ]
with log|d tanh(x)/dx| = 2 (log 2 - x - softplus(-2x)) for tanh, and 0 for clip (the
clipped sample is executed, the density is that of the unclipped one, as in SB3/CleanRL).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robopolicy.fastcall import linear
from robopolicy.heads.base import ActionHead, DivergenceKind, check_divergence_kind
from robopolicy.types import ActionSample

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclass
class GaussianHeadConfig:
    state_dependent_std: bool = False
    """True: log-std is a linear function of the features; False: one learned vector."""
    log_std_init: float = 0.0
    """Initial log-std (SB3's rl-zoo uses -2 for MuJoCo locomotion)."""
    min_log_std: float = -5.0
    """Lower bound on log-std, keeps exploration and log-probs finite."""
    max_log_std: float = 2.0
    """Upper bound on log-std."""
    squash: Literal["tanh", "clip"] = "clip"
    """How the unbounded sample is mapped into [-1, 1]."""
    init_gain: float = 0.01
    """Orthogonal-init gain of the mean layer (small: start near the centre)."""


def gaussian_log_prob(x: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """Elementwise log N(x; mean, exp(log_std)^2)."""
    return -0.5 * ((x - mean) / log_std.exp()) ** 2 - log_std - LOG_SQRT_2PI


def gaussian_kl(mean_p: Tensor, log_std_p: Tensor, mean_q: Tensor, log_std_q: Tensor) -> Tensor:
    """Elementwise KL(p || q) of diagonal Gaussians:
    log(s_q/s_p) + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2."""
    var_p, var_q = (2 * log_std_p).exp(), (2 * log_std_q).exp()
    return log_std_q - log_std_p + (var_p + (mean_p - mean_q) ** 2) / (2 * var_q) - 0.5


def gaussian_divergence(m_s: Tensor, ls_s: Tensor, m_t: Tensor, ls_t: Tensor, kind: str) -> Tensor:
    """Divergence between diagonal Gaussians s (student) and t (teacher) over the last dim, one per leading index:
    reverse_kl = KL(s || t) and forward_kl = KL(t || s) in closed form, js by Monte Carlo (gaussian_js_mc).
    Log-stds broadcast against their means."""
    ls_s, ls_t = ls_s.expand_as(m_s), ls_t.expand_as(m_t)
    if kind == "reverse_kl":
        return gaussian_kl(m_s, ls_s, m_t, ls_t).sum(-1)
    if kind == "forward_kl":
        return gaussian_kl(m_t, ls_t, m_s, ls_s).sum(-1)
    flat = [v.reshape(-1, m_s.shape[-1]) for v in (m_s, ls_s, m_t, ls_t)]
    return gaussian_js_mc(*flat).view(m_s.shape[:-1])


def tanh_log_det(pre: Tensor) -> Tensor:
    """log|d tanh(x)/dx| = log(1 - tanh(x)^2), in a form stable for large |x|."""
    return 2.0 * (math.log(2.0) - pre - F.softplus(-2.0 * pre))


class GaussianHead(ActionHead):
    num_decisions = 1

    def __init__(self, feat_dim: int, action_dim: int, chunk: int, config: GaussianHeadConfig | None = None):
        super().__init__()
        self.config = config or GaussianHeadConfig()
        self.action_dim, self.chunk = action_dim, chunk
        out = chunk * action_dim
        self.mean = nn.Linear(feat_dim, out)
        nn.init.orthogonal_(self.mean.weight, gain=self.config.init_gain)
        nn.init.zeros_(self.mean.bias)
        if self.config.state_dependent_std:
            self.log_std_layer = nn.Linear(feat_dim, out)
            nn.init.zeros_(self.log_std_layer.weight)
            nn.init.constant_(self.log_std_layer.bias, self.config.log_std_init)
        else:
            self.log_std = nn.Parameter(torch.full((out,), float(self.config.log_std_init)))

    def distribution(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-std of the pre-squash Gaussian, each (B, H, A)."""
        mean, log_std = self._flat_mean_log_std(feat)
        shape = (feat.shape[0], self.chunk, self.action_dim)
        if log_std.dim() == 1:  # clamped (H*A,) vector, broadcast: the same values as clamping its expansion
            return mean.view(shape), log_std.view(1, self.chunk, self.action_dim).expand(shape)
        return mean.view(shape), log_std.view(shape)

    def _flat_mean_log_std(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """Mean (B, H*A) as the layer returns it, and clamped log-std (B, H*A), or (H*A,) when
        state-independent (broadcast where used: no expand, no views on the acting path)."""
        mean = linear(self.mean, feat)
        cfg = self.config
        if cfg.state_dependent_std:
            return mean, self.log_std_layer(feat).clamp(cfg.min_log_std, cfg.max_log_std)
        return mean, self.log_std.clamp(cfg.min_log_std, cfg.max_log_std)

    def squash(self, pre: Tensor) -> Tensor:
        return torch.tanh(pre) if self.config.squash == "tanh" else pre.clamp(-1.0, 1.0)

    def _log_prob(self, pre: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
        logp = gaussian_log_prob(pre, mean, log_std)
        if self.config.squash == "tanh":
            logp = logp - tanh_log_det(pre)
        return self.mask_unexecuted(logp.flatten(1)).sum(-1, keepdim=True)  # (B, 1)

    def sample(self, feat: Tensor, deterministic: bool = False) -> ActionSample:
        # Elementwise work on the (B, H*A) rows the mean layer returns (the same values and the same
        # randn draws as on (B, H, A)); actions and trace are (B, H, A) views at the end.
        mean, log_std = self._flat_mean_log_std(feat)
        noise = torch.zeros_like(mean) if deterministic else torch.randn_like(mean)
        pre = torch.addcmul(mean, log_std.exp(), noise)
        if self.executed is not None:  # set_executed: the executed actions' dimensions only
            logp = self._log_prob(pre, mean, log_std)
        else:
            # log N(pre; mean, std) = -noise^2 / 2 - log_std - log sqrt(2 pi): no division needed.
            per_row = self.chunk * self.action_dim  # numel of one row, without a tensor op
            logp = (-0.5 * noise.square() - log_std).sum(-1, keepdim=True) - LOG_SQRT_2PI * per_row
            if self.config.squash == "tanh":
                logp = logp - tanh_log_det(pre).sum(-1, keepdim=True)
        shape = (feat.shape[0], self.chunk, self.action_dim)
        return ActionSample(actions=self.squash(pre).view(shape), trace=pre.view(shape), logp=logp)

    def log_prob(self, feat: Tensor, trace: Tensor) -> Tensor:
        mean, log_std = self.distribution(feat)
        return self._log_prob(trace, mean, log_std)

    def entropy(self, feat: Tensor, trace: Tensor) -> Tensor:
        return self.log_prob_and_entropy(feat, trace)[1]

    def log_prob_and_entropy(self, feat: Tensor, trace: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = self.distribution(feat)
        # Closed-form entropy of the pre-squash Gaussian: sum(log_std + 1/2 log(2 pi e)).
        entropy = (log_std + (0.5 + LOG_SQRT_2PI)).flatten(1).sum(-1, keepdim=True)  # one add, not two
        return self._log_prob(trace, mean, log_std), entropy

    def imitation_loss(self, feat: Tensor, actions: Tensor) -> Tensor:
        """Negative log-likelihood of target chunks (B, H, A) in [-1, 1]."""
        mean, log_std = self.distribution(feat)
        if self.config.squash == "tanh":
            pre = torch.atanh(actions.clamp(-1 + 1e-6, 1 - 1e-6))
            return -self._log_prob(pre, mean, log_std).mean()
        return -gaussian_log_prob(actions, mean, log_std).flatten(1).sum(-1).mean()

    def divergence(
        self, feat: Tensor, trace: Tensor, teacher_head: ActionHead, teacher_feat: Tensor, kind: DivergenceKind
    ) -> Tensor:
        """Closed-form KL between the pre-squash Gaussians (a shared bijective squash leaves
        KL unchanged); JS is estimated by Monte Carlo from both distributions."""
        check_divergence_kind(kind)
        if not isinstance(teacher_head, GaussianHead):
            raise TypeError(f"GaussianHead.divergence needs a GaussianHead teacher, got {type(teacher_head).__name__}")
        m_s, ls_s = self.distribution(feat)
        m_t, ls_t = teacher_head.distribution(teacher_feat)
        return gaussian_divergence(*(v.flatten(1) for v in (m_s, ls_s, m_t, ls_t)), kind).unsqueeze(-1)


def gaussian_js_mc(m_p: Tensor, ls_p: Tensor, m_q: Tensor, ls_q: Tensor, n: int = 256) -> Tensor:
    """JS(p, q) = 1/2 KL(p || m) + 1/2 KL(q || m), m = (p + q) / 2; reparameterized MC, (B, 1)."""

    def joint_logp(x: Tensor, m: Tensor, ls: Tensor) -> Tensor:
        return gaussian_log_prob(x, m, ls).flatten(2).sum(-1)  # (n, B)

    def half_kl(m_a: Tensor, ls_a: Tensor) -> Tensor:
        x = m_a + ls_a.exp() * torch.randn((n, *m_a.shape), device=m_a.device, dtype=m_a.dtype)
        lp, lq = joint_logp(x, m_p, ls_p), joint_logp(x, m_q, ls_q)
        la = lp if m_a is m_p else lq
        lm = torch.logsumexp(torch.stack([lp, lq]), 0) - math.log(2.0)
        return (la - lm).mean(0)

    return (0.5 * half_kl(m_p, ls_p) + 0.5 * half_kl(m_q, ls_q)).unsqueeze(-1)
