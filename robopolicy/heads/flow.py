"""Flow-matching action head: rectified-flow BC, Euler sampling with noise injection (S = K, or the last S).

Pretraining (rectified flow, Liu et al. 2022; pi0-style action experts):
    x0 ~ N(0, I),  x1 = actions,  t ~ U(0, 1),  x_t = (1 - t) x0 + t x1
    loss = || v_theta(x_t, t, feat) - (x1 - x0) ||^2

Sampling turns the ODE into a K-step Gaussian MDP (ReinFlow, Zhang et al. 2025; flow-SDE):
    x_0 ~ N(0, I)                                     (not a decision: no theta in its density)
    mean_k = x_k + v_theta(x_k, k dt, feat) dt,   dt = 1 / K
    x_{k+1} ~ N(mean_k, std_k^2)                      (x_{k+1} = mean_k when deterministic)
    actions = clip(x_K, -1, 1)
std_k is either a learned function of (feat, t) squashed into [min_std, max_std], or a
fixed ``noise_std``. The trace is the whole chain (B, K+1, H, A); logp (B, K) holds the K
per-step log N(x_{k+1}; mean_k, std_k^2), summed over H*A. As for the clip-squashed
Gaussian head, the executed action is the clipped x_K while the density is that of the
unclipped chain. Per-step KL between two such heads is closed form (DiffusionOPD), so PPO
and on-policy distillation treat every integration step as one inner decision.

With ``ft_steps = S < K`` only the last S steps are noisy decisions and the first K - S are
deterministic Euler steps (DPPO's partial chain, carried over from the diffusion head): logp is
(B, S), and the early steps, which carry no density, move only through their effect on x_{K-S}.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robopolicy.heads.base import ActionHead, DivergenceKind, check_divergence_kind
from robopolicy.heads.denoisers import TransformerDenoiser, check_denoiser
from robopolicy.heads.gaussian import LOG_SQRT_2PI, gaussian_divergence, gaussian_log_prob
from robopolicy.heads.steering import (
    attach_steering,
    check_steer_options,
    join_decisions,
    starting_noise,
    steered_divergence,
    steering_error,
)
from robopolicy.types import ActionSample

NOISE_MODES = ("learned", "scheduled")


@dataclass
class FlowHeadConfig:
    num_steps: int = 10
    """K: Euler integration steps of sampling, and the number of inner decisions S."""
    noise: Literal["learned", "scheduled"] = "learned"
    """Per-step exploration std: "learned" (ReinFlow noise net on (feat, t)) or "scheduled" (fixed)."""
    noise_std: float = 0.1
    """The fixed std in "scheduled" mode; the initial std of the noise net in "learned" mode."""
    min_std: float = 0.02
    """Lower bound on the per-step std: keeps log-probs finite and exploration alive."""
    max_std: float = 0.5
    """Upper bound on the per-step std: keeps the chain from drifting far off the flow."""
    ft_steps: int | None = None
    """S: only the last S Euler steps inject noise and are decisions; the first K - S run deterministically
    (DPPO's partial chain). None: all K (ReinFlow). A fine-tuning option: it changes no weight shapes."""
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    """Widths of the velocity MLP's hidden layers."""
    time_embed_dim: int = 32
    """Size of the sinusoidal embedding of t in [0, 1] (even)."""
    num_noise_samples: int = 1
    """(x0, t) draws per condition in imitation_loss: one encoder pass, several targets (Mini-Diffuser)."""
    denoiser: str = "mlp"
    """Velocity network: mlp (concatenation-conditioned) or transformer (DiT-style, robopolicy.heads.denoisers)."""
    dit_width: int = 128
    """Transformer velocity width (denoiser=transformer)."""
    dit_depth: int = 2
    """Transformer velocity blocks."""
    dit_heads: int = 4
    """Transformer velocity attention heads."""
    steer: bool = False
    """Latent-noise steering (DSRL, robopolicy.heads.steering): the one decision is the chain's starting noise,
    drawn from a learned Gaussian; the Euler steps inject no noise and the velocity and noise nets and the encoder
    are frozen. A fine-tuning option."""
    steer_hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    """Widths of the steering MLP (steer=true)."""
    steer_init_std: float = 1.0
    """Initial std of the steered starting noise; 1 is the pretrained policy's own sampling."""
    steer_chain: bool = False
    """With steer: keep the chain's decisions too (the last ft_steps Euler steps, with their noise) and train the
    velocity and noise nets and the encoder along with the steering; S = 1 + ft_steps (or 1 + K)."""

    def __post_init__(self) -> None:
        if self.noise not in NOISE_MODES:
            raise ValueError(f"FlowHeadConfig.noise: unknown noise mode {self.noise!r}; expected one of {NOISE_MODES}")
        if self.num_steps < 1:
            raise ValueError(f"FlowHeadConfig.num_steps must be >= 1, got {self.num_steps}")
        if not 0.0 < self.min_std <= self.max_std:
            raise ValueError(f"FlowHeadConfig: need 0 < min_std <= max_std, got min_std={self.min_std}, "
                             f"max_std={self.max_std}")
        if self.ft_steps is not None and not 1 <= self.ft_steps <= self.num_steps:
            raise ValueError(f"FlowHeadConfig.ft_steps={self.ft_steps} must be in [1, num_steps={self.num_steps}]")
        if self.time_embed_dim < 2 or self.time_embed_dim % 2:
            raise ValueError(f"FlowHeadConfig.time_embed_dim must be even and >= 2, got {self.time_embed_dim}")
        if self.num_noise_samples < 1:
            raise ValueError(f"FlowHeadConfig.num_noise_samples must be >= 1, got {self.num_noise_samples}")


def sinusoidal_embedding(t: Tensor, dim: int, scale: float = 1000.0, max_period: float = 10000.0) -> Tensor:
    """Transformer-style embedding of t (N,) in [0, 1] -> (N, dim).

    emb = [sin(scale t w_i), cos(scale t w_i)],  w_i = max_period^(-i / (dim/2)); ``scale``
    spreads [0, 1] over the DDPM timestep range so the fast frequencies resolve small dt.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=t.dtype) / half)
    args = (scale * t).unsqueeze(-1) * freqs
    return torch.cat([args.sin(), args.cos()], dim=-1)


class FlowHead(ActionHead):
    """Rectified-flow head. Shapes: feat (B, F); actions (B, H, A); trace (B, K+1, H, A); logp (B, S)."""

    def __init__(self, feat_dim: int, action_dim: int, chunk: int, config: FlowHeadConfig | None = None):
        super().__init__()
        self.config = config or FlowHeadConfig()
        self.action_dim, self.chunk = action_dim, chunk
        self.num_decisions = self.config.ft_steps or self.config.num_steps
        out = chunk * action_dim
        # Velocity field v_theta([x_t, emb(t), feat]) -> (B, H*A); conditioning by concatenation.
        sizes = [out + self.config.time_embed_dim + feat_dim, *self.config.hidden_sizes]
        layers: list[nn.Module] = []
        for d_in, d_out in itertools.pairwise(sizes):
            layers += [nn.Linear(d_in, d_out), nn.Mish()]
        layers.append(nn.Linear(sizes[-1], out))
        self.velocity = nn.Sequential(*layers)
        check_denoiser(self.config.denoiser, "FlowHeadConfig")
        if self.config.denoiser == "transformer":  # t in [0, 1] is scaled to the DDPM range as in the MLP's embedding
            self.velocity = TransformerDenoiser(feat_dim, chunk, action_dim, self.config.dit_width,
                                                self.config.dit_depth, self.config.dit_heads,
                                                self.config.time_embed_dim, time_scale=1000.0)
        cfg = self.config
        if cfg.noise == "learned":
            # ReinFlow noise net: std = min + (max - min) sigmoid(W [feat, emb(t)] + b); zero W and
            # b = logit(p0) start every step at noise_std, as the scheduled mode would.
            self.noise_net = nn.Linear(feat_dim + cfg.time_embed_dim, out)
            p0 = (cfg.noise_std - cfg.min_std) / max(cfg.max_std - cfg.min_std, 1e-8)
            p0 = min(max(p0, 1e-3), 1 - 1e-3)
            nn.init.zeros_(self.noise_net.weight)
            nn.init.constant_(self.noise_net.bias, math.log(p0 / (1 - p0)))
        else:
            self.noise_net = None
        self.chain_frozen = check_steer_options(cfg, "FlowHeadConfig")
        self.steering = attach_steering(self, feat_dim, cfg.steer_hidden_sizes, cfg.steer_init_std,
                                        self.chain_frozen) if cfg.steer else None
        self.chain_decisions = 0 if self.chain_frozen else self.num_decisions  # the Euler steps among the decisions
        self.num_decisions = int(self.steering is not None) + self.chain_decisions
        # Deterministic acting from the starting noise's mean (0) instead of a draw: an acting choice, not a weight,
        # so not in the config; evaluate(zero_start=True) sets it (docs/finetuning_results.md, session 35).
        self.zero_start = False

    # ----------------------------------------------------------------- networks
    def velocity_field(self, x: Tensor, t: Tensor, feat: Tensor) -> Tensor:
        """v_theta(x_t, t, feat): x (N, H*A), t (N,) in [0, 1], feat (N, F) -> (N, H*A)."""
        if isinstance(self.velocity, TransformerDenoiser):
            return self.velocity(x, t, feat)
        emb = sinusoidal_embedding(t, self.config.time_embed_dim)
        return self.velocity(torch.cat([x, emb, feat], dim=-1))

    def _std(self, t: Tensor, feat: Tensor) -> Tensor:
        """Per-step std (N, H*A) in [min_std, max_std] for times t (N,) and features (N, F)."""
        cfg = self.config
        if self.noise_net is None:
            std = min(max(cfg.noise_std, cfg.min_std), cfg.max_std)
            return feat.new_full((feat.shape[0], self.chunk * self.action_dim), std)
        emb = sinusoidal_embedding(t, cfg.time_embed_dim)
        raw = self.noise_net(torch.cat([feat, emb], dim=-1))
        return cfg.min_std + (cfg.max_std - cfg.min_std) * torch.sigmoid(raw)

    def _euler_mean(self, x: Tensor, t: Tensor, feat: Tensor) -> Tensor:
        """x + v_theta(x, t, feat) dt, (N, H*A): one expression for noisy and deterministic steps alike."""
        return x + self.velocity_field(x, t, feat) * (1.0 / self.config.num_steps)

    def _transition(self, x: Tensor, t: Tensor, feat: Tensor) -> tuple[Tensor, Tensor]:
        """Euler-step Gaussian: mean = x + v_theta(x, t, feat) dt, and std; each (N, H*A)."""
        return self._euler_mean(x, t, feat), self._std(t, feat)

    def step_distribution(self, feat: Tensor, x_k: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """Mean and std (B, H*A) of p(x_{k+1} | x_k, feat) for step k in [0, K); x_k is (B, H*A)."""
        if not 0 <= k < self.config.num_steps:
            raise ValueError(f"step k must be in [0, {self.config.num_steps}), got {k}")
        t = x_k.new_full((x_k.shape[0],), k / self.config.num_steps)
        return self._transition(x_k, t, feat)

    def _chain_distributions(self, feat: Tensor, trace: Tensor, s: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """The last S (or ``s``) transitions of a stored chain, the decisions, in one batched pass.

        Returns the next states x_{K-S+1..K}, means and stds, each (B, S, H*A).
        """
        b, k, s = feat.shape[0], self.config.num_steps, s or self.chain_decisions
        expected = (b, k + 1, self.chunk, self.action_dim)
        if tuple(trace.shape) != expected:
            raise ValueError(f"FlowHead trace must have shape (B, K+1, H, A) = {expected}, got {tuple(trace.shape)}")
        chain = trace.flatten(2)  # (B, K+1, H*A)
        x = chain[:, k - s : k].reshape(b * s, -1)
        steps = torch.arange(k - s, k, device=feat.device, dtype=feat.dtype)
        t = (steps / k).repeat(b)  # row i*S + j has t = (K - S + j) / K
        mean, std = self._transition(x, t, feat.repeat_interleave(s, dim=0))
        return chain[:, k - s + 1 :], mean.view(b, s, -1), std.view(b, s, -1)

    # ----------------------------------------------------------------- interface
    def sample(self, feat: Tensor, deterministic: bool = False) -> ActionSample:
        """x_0 ~ N(0, I), K Euler steps, the last S noisy (none when deterministic); trace (B, K+1, H, A), logp (B, S).

        Deterministic sampling keeps the random x_0 (the flow maps noise to modes) and records
        logp = log N(mean_k; mean_k, std_k^2), i.e. what ``log_prob`` gives for that chain. Steered: x_0 from the
        steering Gaussian (its mean when deterministic), its density the first decision; with the chain frozen every
        Euler step is deterministic.
        """
        b, k_steps = feat.shape[0], self.config.num_steps
        first_decision = k_steps - self.chain_decisions
        x, logps = starting_noise(self.steering, feat, self.chunk * self.action_dim, deterministic,
                                   self.zero_start)
        chain = [x]
        for k in range(k_steps):
            if k < first_decision:  # a deterministic Euler step: no noise, no density
                x = self._euler_mean(x, x.new_full((b,), k / k_steps), feat)
                chain.append(x)
                continue
            mean, std = self.step_distribution(feat, x, k)
            z = torch.zeros_like(mean) if deterministic else torch.randn_like(mean)
            x = torch.addcmul(mean, std, z)  # x_{k+1} = mean_k + std_k z
            # log N(x; mean, std) = -z^2 / 2 - log std - log sqrt(2 pi): no division needed.
            per_dim = -0.5 * z.square() - std.log() - LOG_SQRT_2PI
            logps.append((self.mask_unexecuted(per_dim) if k == k_steps - 1 else per_dim).sum(-1))  # the chunk's step
            chain.append(x)
        trace = torch.stack(chain, dim=1).view(b, k_steps + 1, self.chunk, self.action_dim)
        actions = trace[:, -1].clamp(-1.0, 1.0)
        return ActionSample(actions=actions, trace=trace, logp=torch.stack(logps, dim=1))

    def _start(self, trace: Tensor) -> Tensor:
        """The chain's starting noise x_0 (B, H*A) of a stored trace, checked."""
        expected = (self.config.num_steps + 1, self.chunk, self.action_dim)
        if trace.dim() != 4 or tuple(trace.shape[1:]) != expected:
            raise ValueError(f"FlowHead trace must have shape (B, K+1, H, A) = (B, {', '.join(map(str, expected))}), "
                             f"got {tuple(trace.shape)}")
        return trace[:, 0].flatten(1)

    def log_prob(self, feat: Tensor, trace: Tensor) -> Tensor:
        """Per-step log N(x_{k+1}; mean_k, std_k^2) summed over H*A: (B, S); grads reach both nets (the last step
        over the executed actions' dimensions only after ``set_executed``). Steered: the density of x_0 first."""
        parts = [self.steering.log_prob(feat, self._start(trace))] if self.steering is not None else []
        if self.chain_decisions:
            x_next, mean, std = self._chain_distributions(feat, trace)
            parts.append(self.mask_last_decision(gaussian_log_prob(x_next, mean, std.log())).sum(-1))
        return join_decisions(parts)

    def entropy(self, feat: Tensor, trace: Tensor) -> Tensor:
        """Closed-form entropy of each decision, (B, S)."""
        return self.log_prob_and_entropy(feat, trace)[1]

    def log_prob_and_entropy(self, feat: Tensor, trace: Tensor) -> tuple[Tensor, Tensor]:
        """Both (B, S) from one pass over the decisions."""
        logp, entropy = [], []
        if self.steering is not None:
            logp.append(self.steering.log_prob(feat, self._start(trace)))
            entropy.append(self.steering.entropy(trace.shape[0]))
        if self.chain_decisions:
            x_next, mean, std = self._chain_distributions(feat, trace)
            log_std = std.log()
            # H(N(m, s^2)) = log s + 1/2 log(2 pi e), summed over H*A.
            entropy.append((log_std + 0.5 + LOG_SQRT_2PI).sum(-1))
            logp.append(self.mask_last_decision(gaussian_log_prob(x_next, mean, log_std)).sum(-1))
        return join_decisions(logp), join_decisions(entropy)

    def imitation_loss(self, feat: Tensor, actions: Tensor) -> Tensor:
        """Rectified-flow loss for target chunks (B, H, A) in [-1, 1]; scalar.

        With num_noise_samples = n, each condition gets n (x0, t) draws: feat is repeated
        along the batch, so the encoder runs once per condition.
        """
        if self.chain_frozen:
            raise steering_error(self, "imitation_loss")
        b, n = feat.shape[0], self.config.num_noise_samples
        expected = (b, self.chunk, self.action_dim)
        if tuple(actions.shape) != expected:
            raise ValueError(f"FlowHead.imitation_loss: actions must be (B, H, A) = {expected}, "
                             f"got {tuple(actions.shape)}")
        x1 = actions.flatten(1).repeat(n, 1)  # (n B, H*A)
        feat_rep = feat.repeat(n, 1)
        x0 = torch.randn_like(x1)
        t = torch.rand(x1.shape[0], device=x1.device, dtype=x1.dtype)
        xt = (1 - t.unsqueeze(-1)) * x0 + t.unsqueeze(-1) * x1  # x_t = (1 - t) x0 + t x1
        return F.mse_loss(self.velocity_field(xt, t, feat_rep), x1 - x0)  # target velocity x1 - x0

    def divergence(
        self, feat: Tensor, trace: Tensor, teacher_head: ActionHead, teacher_feat: Tensor, kind: DivergenceKind
    ) -> Tensor:
        """Per-step divergence (B, S) between student and teacher transitions at the student's x_k.

        Both transitions are diagonal Gaussians, so reverse_kl = KL(student || teacher) and
        forward_kl = KL(teacher || student) are closed form (DiffusionOPD). JS has no closed
        form: it is a reparameterized Monte-Carlo estimate per step (256 draws from each
        transition, JS = 1/2 KL(p || m) + 1/2 KL(q || m), m = (p + q) / 2): unbiased but noisy,
        and differentiable through the draws.
        """
        check_divergence_kind(kind)
        if not isinstance(teacher_head, FlowHead):
            raise TypeError(f"FlowHead.divergence needs a FlowHead teacher, got {type(teacher_head).__name__}")
        shape_s = (self.config.num_steps, self.chunk, self.action_dim)
        shape_t = (teacher_head.config.num_steps, teacher_head.chunk, teacher_head.action_dim)
        if shape_s != shape_t:
            raise ValueError(f"FlowHead.divergence: teacher (num_steps, chunk, action_dim) = {shape_t} must match "
                             f"the student's {shape_s}: per-step KL compares the same Euler steps")
        return steered_divergence(self, teacher_head, feat, teacher_feat, kind,
                                  lambda: self._chain_divergence(feat, trace, teacher_head, teacher_feat, kind))

    def _chain_divergence(self, feat: Tensor, trace: Tensor, teacher_head: FlowHead, teacher_feat: Tensor,
                          kind: DivergenceKind) -> Tensor:
        """Per-step divergence (B, S) of the Euler decisions."""
        _, m_s, std_s = self._chain_distributions(feat, trace)
        _, m_t, std_t = teacher_head._chain_distributions(teacher_feat, trace, self.chain_decisions)
        return gaussian_divergence(m_s, std_s.log(), m_t, std_t.log(), kind)
