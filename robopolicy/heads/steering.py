"""Latent-noise steering (DSRL, Wagenmaker et al. 2025): fine-tune a diffusion or flow head by learning where its
chain starts, not how it denoises.

Both heads turn a starting noise w ~ N(0, I) (B, H*A) into a chunk through a chain that is a fixed function of w
once its injected noise is off (DDIM means; Euler steps). With ``steer: true`` the head draws w from a Gaussian
conditioned on the features and keeps the chain deterministic:

    w ~ N(mu_phi(feat), diag sigma_phi^2),   chunk = chain_theta(w, feat)   (theta and the encoder frozen)
    logp (B, 1) = log N(w; mu_phi, sigma_phi^2) summed over H*A            (one decision per policy step)

PPO then moves only phi, so every chunk the policy can output is one the pretrained chain maps some noise to: it
selects among the BC policy's own behaviours instead of reshaping them. At init mu = 0 and sigma = ``init_std`` (1),
which is the pretrained policy sampled as usual; deterministic acting uses w = mu.

``steer_chain: true`` keeps the chain's own decisions as well (its last ``ft_steps`` noisy steps, DPPO / ReinFlow):
S = 1 + ft_steps, the chain, the encoder and the steering all train, and at init the policy is the unsteered head's
exactly. Steering then adds a state-dependent choice of the starting noise to the usual fine-tuning.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from robopolicy.heads.gaussian import LOG_SQRT_2PI, gaussian_divergence, gaussian_log_prob


class NoiseSteering(nn.Module):
    """N(mu_phi(feat), diag sigma^2) over a chain's starting noise: feat (B, F) -> noise (B, D), logp (B, 1)."""

    def __init__(self, feat_dim: int, noise_dim: int, hidden_sizes: list[int], init_std: float):
        super().__init__()
        if init_std <= 0:
            raise ValueError(f"steer_init_std={init_std} must be > 0")
        sizes = [feat_dim, *hidden_sizes]
        layers: list[nn.Module] = []
        for d_in, d_out in itertools.pairwise(sizes):
            layers += [nn.Linear(d_in, d_out), nn.Tanh()]
        last = nn.Linear(sizes[-1], noise_dim)
        nn.init.zeros_(last.weight)  # mu = 0 at init: the pretrained policy's own noise distribution
        nn.init.zeros_(last.bias)
        self.mean_net = nn.Sequential(*layers, last)
        self.log_std = nn.Parameter(torch.full((noise_dim,), math.log(init_std)))

    def forward(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-std, each (B, D)."""
        mean = self.mean_net(feat)
        return mean, self.log_std.expand_as(mean)

    def sample(self, feat: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor]:
        """Starting noise (B, D) and its log-density (B, 1); deterministic: the mean."""
        mean, log_std = self(feat)
        z = torch.zeros_like(mean) if deterministic else torch.randn_like(mean)
        w = mean + log_std.exp() * z
        return w, (-0.5 * z.square() - log_std - LOG_SQRT_2PI).sum(-1, keepdim=True)

    def log_prob(self, feat: Tensor, noise: Tensor) -> Tensor:
        """Differentiable log N(noise; mu_phi(feat), sigma^2) summed over D: (B, 1)."""
        mean, log_std = self(feat)
        return gaussian_log_prob(noise, mean, log_std).sum(-1, keepdim=True)

    def entropy(self, batch: int) -> Tensor:
        """Closed form, (B, 1): sum over D of log sigma + 1/2 + log sqrt(2 pi)."""
        return (self.log_std + 0.5 + LOG_SQRT_2PI).sum().expand(batch, 1)

    def divergence(self, feat: Tensor, teacher: NoiseSteering, teacher_feat: Tensor, kind: str) -> Tensor:
        """Divergence (B, 1) between two steering distributions: reverse / forward KL in closed form, JS by MC."""
        m_s, ls_s = self(feat)
        m_t, ls_t = teacher(teacher_feat)
        return gaussian_divergence(m_s, ls_s, m_t, ls_t, kind).unsqueeze(-1)


def check_steer_options(cfg: Any, where: str) -> bool:
    """Validate a head config's steer options; True when the chain is frozen (steer without steer_chain)."""
    if cfg.steer_chain and not cfg.steer:
        raise ValueError(f"{where}.steer_chain=true needs steer=true")
    return bool(cfg.steer and not cfg.steer_chain)


def attach_steering(head: nn.Module, feat_dim: int, hidden_sizes: list[int], init_std: float,
                    freeze_chain: bool) -> NoiseSteering:
    """Build the head's steering net; ``freeze_chain``: freeze every other weight of the head, so that PPO moves
    only the steering."""
    if freeze_chain:
        for p in head.parameters():
            p.requires_grad_(False)
    return NoiseSteering(feat_dim, head.chunk * head.action_dim, list(hidden_sizes), init_std)


def starting_noise(steering: NoiseSteering | None, feat: Tensor, noise_dim: int, deterministic: bool,
                   zero_start: bool = False) -> tuple[Tensor, list[Tensor]]:
    """A chain's starting noise (B, noise_dim) and the decisions' log-probs so far: the steering's draw (its mean when
    deterministic) and [its logp (B,)], or N(0, I) and [] unsteered; ``zero_start`` and deterministic: its mean, 0."""
    if steering is None:
        if deterministic and zero_start:  # the chain is then a function of the state alone
            return torch.zeros(feat.shape[0], noise_dim, device=feat.device, dtype=feat.dtype), []
        return torch.randn(feat.shape[0], noise_dim, device=feat.device, dtype=feat.dtype), []
    noise, logp = steering.sample(feat, deterministic)
    return noise, [logp.squeeze(-1)]


def join_decisions(parts: list[Tensor]) -> Tensor:
    """Per-decision tensors (B, S_i) side by side: the steering's decision first, then the chain's."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def steered_divergence(student: nn.Module, teacher: nn.Module, feat: Tensor, teacher_feat: Tensor, kind: str,
                       chain_divergence: Callable[[], Tensor]) -> Tensor:
    """Per-decision divergence (B, S) of a diffusion or flow head, steered or not: the starting noise's first, then
    ``chain_divergence()`` (B, chain_decisions), called when the chain has decisions. Both heads steered or neither."""
    if (student.steering is None) != (teacher.steering is None):
        raise ValueError(f"{type(student).__name__}.divergence: the student and the teacher must both be steered "
                         "(steer=true) or neither: a steered head's first decision is the starting noise, an unsteered "
                         "one's are its chain's steps")
    parts = []
    if student.steering is not None:
        parts.append(student.steering.divergence(feat, teacher.steering, teacher_feat, kind))
    if student.chain_decisions:
        parts.append(chain_divergence())
    return join_decisions(parts)


def steering_error(head: nn.Module, what: str) -> ValueError:
    """The error for what a steered head does not do (its chain is frozen)."""
    return ValueError(f"{type(head).__name__}.{what}: not with steer=true, whose one decision is the starting noise "
                      "and whose chain is frozen; train and configure the head without steer, then fine-tune with "
                      "+init_head_options.steer=true")
