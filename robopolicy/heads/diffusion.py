"""Diffusion action head: a DDIM denoising chain treated as a Gaussian MDP (as in DPPO).

Training (imitation) is standard DDPM denoising with the diffusers ``DDPMScheduler``:
    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,   t ~ U{0..T-1},  eps ~ N(0, I)
    loss = || f_theta(x_t, t, feat) - target ||^2,   target = eps ("epsilon") or x_0 ("sample")

Sampling runs K DDIM steps on the timesteps of ``DDIMScheduler.set_timesteps(K)``. Step i
(0 <= i < K) maps x_k = trace[:, i] at timestep t_i to x_{k-1} = trace[:, i+1]:
    x0_hat = clip((x_k - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t), -1, 1)     (Eq. 12, DDIM)
    eps    = (x_k - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t)                   (re-derived from the clipped x0)
    mu_k   = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma_eta^2) eps  (sigma_eta = eta * DDIM sigma)
    x_{k-1} = mu_k + std_k z,   std_k = max(sigma_eta, min_std),  z ~ N(0, I)
The mean equals ``DDIMScheduler.step(..., use_clipped_model_output=True)`` without its noise.
Because every transition is Gaussian with a known std, log-probs and per-step KLs are exact.
The last S = ``ft_steps`` transitions are the policy's decisions; earlier ones are part of
the environment (DPPO). Glossary: B batch, F feature dim, H chunk, A action dim, K steps.

    trace (B, K+1, H, A):  x_K ~ N(0, I) -> ... -> x_0        actions = clamp(x_0, -1, 1)
    logp  (B, S):          log N(x_{k-1}; mu_k(x_k), std_k^2) summed over H*A, last S steps
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
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

PREDICTION_TYPES = ("epsilon", "sample")


@dataclass
class DiffusionHeadConfig:
    num_train_timesteps: int = 100
    """T: diffusion timesteps of the training (DDPM) schedule."""
    num_inference_steps: int = 10
    """K: DDIM denoising steps when sampling (the chain has K transitions)."""
    prediction_type: Literal["epsilon", "sample"] = "epsilon"
    """What the denoiser predicts: the noise eps or the clean chunk x_0."""
    min_std: float = 0.1
    """Lower bound on the exploration std of each denoising step (keeps log-probs finite, DPPO)."""
    eta: float = 0.0
    """DDIM eta: 0 = deterministic DDIM mean with std = min_std, 1 = DDPM-like posterior std."""
    ft_steps: int | None = None
    """S: how many of the last denoising steps are decisions (None = all K)."""
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    """Widths of the denoiser MLP."""
    time_embed_dim: int = 32
    """Size of the sinusoidal timestep embedding."""
    num_noise_samples: int = 1
    """Noised targets per condition in imitation_loss (one feature pass, several noise draws)."""
    clip_sample: bool = True
    """Clip x_0 predictions to [-1, 1] while sampling."""
    beta_schedule: str = "squaredcos_cap_v2"
    """diffusers beta schedule shared by training and sampling."""
    denoiser: str = "mlp"
    """mlp (Denoiser below) or transformer (DiT-style adaLN, robopolicy.heads.denoisers)."""
    dit_width: int = 128
    """Transformer denoiser width (denoiser=transformer)."""
    dit_depth: int = 2
    """Transformer denoiser blocks."""
    dit_heads: int = 4
    """Transformer denoiser attention heads."""
    steer: bool = False
    """Latent-noise steering (DSRL, robopolicy.heads.steering): the one decision is the chain's starting noise,
    drawn from a learned Gaussian; the denoiser and the encoder are frozen. A fine-tuning option."""
    steer_hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    """Widths of the steering MLP (steer=true)."""
    steer_init_std: float = 1.0
    """Initial std of the steered starting noise; 1 is the pretrained policy's own sampling."""
    steer_chain: bool = False
    """With steer: keep the chain's decisions too (the last ft_steps denoising steps, with their exploration noise)
    and train the denoiser and the encoder along with the steering; S = 1 + ft_steps."""


def sinusoidal_embedding(t: Tensor, dim: int) -> Tensor:
    """(N,) integer timesteps -> (N, dim): [sin(t w_j), cos(t w_j)], w_j = 10000^(-j / (dim/2 - 1))."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / max(half - 1, 1))
    args = t.float().unsqueeze(-1) * freqs
    return torch.cat([args.sin(), args.cos()], dim=-1)


class Denoiser(nn.Module):
    """MLP f_theta(x (N, H*A), t (N,), feat (N, F)) -> (N, H*A), conditioned by concatenation."""

    def __init__(self, feat_dim: int, out_dim: int, hidden_sizes: list[int], time_embed_dim: int):
        super().__init__()
        self.time_embed_dim = time_embed_dim
        # Sinusoidal features -> small MLP, as in diffusion_policy's ConditionalUnet1D.
        self.time_mlp = nn.Sequential(
            nn.Linear(time_embed_dim, 2 * time_embed_dim), nn.Mish(), nn.Linear(2 * time_embed_dim, time_embed_dim)
        )
        layers: list[nn.Module] = []
        width = out_dim + time_embed_dim + feat_dim
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), nn.Mish()]
            width = h
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor, feat: Tensor) -> Tensor:
        temb = self.time_mlp(sinusoidal_embedding(t, self.time_embed_dim))
        return self.net(torch.cat([x, temb, feat], dim=-1))


class DiffusionHead(ActionHead):
    """DDPM-trained, DDIM-sampled head whose last S denoising steps are the decisions.

    Shapes: feat (B, F); actions (B, H, A); trace (B, K+1, H, A); logp (B, S).
    """

    def __init__(self, feat_dim: int, action_dim: int, chunk: int, config: DiffusionHeadConfig | None = None):
        super().__init__()
        cfg = self.config = config or DiffusionHeadConfig()
        if cfg.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"DiffusionHeadConfig.prediction_type: unknown {cfg.prediction_type!r}; "
                             f"expected one of {PREDICTION_TYPES}")
        if not 1 <= cfg.num_inference_steps <= cfg.num_train_timesteps:
            raise ValueError(f"DiffusionHeadConfig.num_inference_steps={cfg.num_inference_steps} must be in "
                             f"[1, num_train_timesteps={cfg.num_train_timesteps}]")
        k = cfg.num_inference_steps
        s = k if cfg.ft_steps is None else cfg.ft_steps
        if not 1 <= s <= k:
            raise ValueError(f"DiffusionHeadConfig.ft_steps={cfg.ft_steps} must be in [1, num_inference_steps={k}]")
        if cfg.min_std <= 0:
            raise ValueError(f"DiffusionHeadConfig.min_std={cfg.min_std} must be > 0 for finite log-probs")
        if cfg.num_noise_samples < 1:
            raise ValueError(f"DiffusionHeadConfig.num_noise_samples={cfg.num_noise_samples} must be >= 1")
        self.action_dim, self.chunk, self.num_steps, self.num_decisions = action_dim, chunk, k, s
        check_denoiser(cfg.denoiser, "DiffusionHeadConfig")
        if cfg.denoiser == "transformer":
            self.denoiser: nn.Module = TransformerDenoiser(feat_dim, chunk, action_dim, cfg.dit_width, cfg.dit_depth,
                                                           cfg.dit_heads, cfg.time_embed_dim)
        else:
            self.denoiser = Denoiser(feat_dim, chunk * action_dim, list(cfg.hidden_sizes), cfg.time_embed_dim)

        sched = {"num_train_timesteps": cfg.num_train_timesteps, "beta_schedule": cfg.beta_schedule,
                 "clip_sample": cfg.clip_sample, "prediction_type": cfg.prediction_type}
        self.train_scheduler = DDPMScheduler(**sched)
        self.sample_scheduler = DDIMScheduler(**sched)
        self.sample_scheduler.set_timesteps(k)
        timesteps = self.sample_scheduler.timesteps.long()  # (K,) descending, e.g. 90, 80, ..., 0
        abar = self.sample_scheduler.alphas_cumprod.to(torch.float32)
        # Previous timestep as in DDIMScheduler.step: t - T // K; below 0 -> final_alpha_cumprod (1).
        prev = timesteps - cfg.num_train_timesteps // k
        final = torch.as_tensor(self.sample_scheduler.final_alpha_cumprod, dtype=torch.float32)
        abar_t = abar[timesteps]
        abar_prev = torch.where(prev >= 0, abar[prev.clamp(min=0)], final)
        # DDIM sigma_t(eta) = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)   (Eq. 16)
        sigma_eta = cfg.eta * ((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)).clamp(min=0).sqrt()
        # Buffers are derived from the config, so they are not saved with the weights.
        self.register_buffer("timesteps", timesteps, persistent=False)
        self.register_buffer("abar_t", abar_t, persistent=False)
        self.register_buffer("abar_prev", abar_prev, persistent=False)
        self.register_buffer("sigma_eta", sigma_eta, persistent=False)
        self.register_buffer("step_std", sigma_eta.clamp(min=cfg.min_std), persistent=False)  # (K,)
        self.chain_frozen = check_steer_options(cfg, "DiffusionHeadConfig")
        self.steering = attach_steering(self, feat_dim, cfg.steer_hidden_sizes, cfg.steer_init_std,
                                        self.chain_frozen) if cfg.steer else None
        self.chain_decisions = 0 if self.chain_frozen else s  # the denoising steps among the decisions
        self.num_decisions = int(self.steering is not None) + self.chain_decisions
        # Deterministic acting from the starting noise's mean (0) instead of a draw: an acting choice, not a weight,
        # so not in the config; evaluate(zero_start=True) sets it (docs/finetuning_results.md, session 35).
        self.zero_start = False

    def set_min_std(self, min_std: float) -> None:
        """Move the exploration floor (PPO's ``algo.min_std_final`` anneals it between rollouts)."""
        if self.chain_frozen:
            raise steering_error(self, "set_min_std")
        if min_std <= 0:
            raise ValueError(f"DiffusionHead.set_min_std: min_std={min_std} must be > 0 for finite log-probs")
        self.config.min_std = min_std
        self.step_std.copy_(self.sigma_eta.clamp(min=min_std))

    # ----- one denoising transition ---------------------------------------------------------------------------------

    def _means(self, feat: Tensor, x: Tensor, idx: Tensor) -> Tensor:
        """Batched DDIM means: feat (N, F), x (N, H*A), step indices idx (N,) -> mu (N, H*A)."""
        a_t, a_prev = self.abar_t[idx].unsqueeze(-1), self.abar_prev[idx].unsqueeze(-1)
        sig = self.sigma_eta[idx].unsqueeze(-1)
        out = self.denoiser(x, self.timesteps[idx], feat)
        if self.config.prediction_type == "epsilon":
            x0 = (x - (1 - a_t).sqrt() * out) / a_t.sqrt()  # x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
        else:
            x0 = out
        if self.config.clip_sample:
            x0 = x0.clamp(-1.0, 1.0)
        eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()  # eps re-derived from the (clipped) x0, as DPPO / Glide
        # mu = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps
        return a_prev.sqrt() * x0 + (1 - a_prev - sig**2).clamp(min=0).sqrt() * eps

    def step_mean(self, feat: Tensor, x_k: Tensor, step_index: int) -> Tensor:
        """Mean mu_k of step ``step_index`` (0 = first, from x_K): feat (B, F), x_k (B, H, A) -> (B, H, A)."""
        idx = torch.full((x_k.shape[0],), step_index, dtype=torch.long, device=x_k.device)
        return self._means(feat, x_k.flatten(1), idx).view_as(x_k)

    def _decision_stats(self, feat: Tensor, trace: Tensor, s: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """One batched denoiser pass over the last S (or ``s``) transitions of ``trace`` (B, K+1, H, A).

        Returns the means (B, S, H*A), log-stds (1, S, 1) and the next states x_{k-1} (B, S, H*A).
        """
        self._start(trace)  # checks the shape
        b, k, s = trace.shape[0], self.num_steps, s or self.chain_decisions
        x = trace[:, k - s : k].flatten(2)  # (B, S, H*A) states x_k of the decisions
        idx = torch.arange(k - s, k, device=trace.device).expand(b, s)
        feat_rep = feat.unsqueeze(1).expand(b, s, feat.shape[-1])
        mean = self._means(feat_rep.reshape(b * s, -1), x.reshape(b * s, -1), idx.reshape(-1)).view(b, s, -1)
        log_std = self.step_std[k - s :].log().view(1, s, 1)
        return mean, log_std, trace[:, k - s + 1 :].flatten(2)

    # ----- ActionHead -----------------------------------------------------------------------------------------------

    def sample(self, feat: Tensor, deterministic: bool = False) -> ActionSample:
        """Run the K-step chain from x_K ~ N(0, I). Deterministic: x_{k-1} = mu_k (logp still uses std_k).
        Steered: x_K from the steering Gaussian (its mean when deterministic), its density the first decision;
        with the chain frozen every step is the DDIM mean."""
        b, k, s = feat.shape[0], self.num_steps, self.chain_decisions
        x, logps = starting_noise(self.steering, feat, self.chunk * self.action_dim, deterministic,
                                   self.zero_start)
        deterministic = deterministic or self.chain_frozen
        chain = [x]
        for i in range(k):
            mean = self._means(feat, x, torch.full((b,), i, dtype=torch.long, device=feat.device))
            std = self.step_std[i]
            x = mean if deterministic else mean + std * torch.randn_like(mean)
            if i >= k - s:
                per_dim = gaussian_log_prob(x, mean, std.log().expand_as(mean))
                logps.append((self.mask_unexecuted(per_dim) if i == k - 1 else per_dim).sum(-1))  # the chunk's step
            chain.append(x)
        trace = torch.stack(chain, dim=1).view(b, k + 1, self.chunk, self.action_dim)
        return ActionSample(actions=trace[:, -1].clamp(-1.0, 1.0), trace=trace, logp=torch.stack(logps, dim=1))

    def _start(self, trace: Tensor) -> Tensor:
        """The chain's starting noise x_K (B, H*A) of a stored trace, checked."""
        if trace.dim() != 4 or trace.shape[1:] != (self.num_steps + 1, self.chunk, self.action_dim):
            raise ValueError(f"DiffusionHead: trace shape {tuple(trace.shape)}, expected "
                             f"(B, {self.num_steps + 1}, {self.chunk}, {self.action_dim})")
        return trace[:, 0].flatten(1)

    def log_prob(self, feat: Tensor, trace: Tensor) -> Tensor:
        """Sum over H*A of log N(x_{k-1}; mu_k(x_k), std_k^2) for the last S steps: (B, S), differentiable
        (the last step over the executed actions' dimensions only after ``set_executed``). Steered: the density of
        the starting noise first."""
        parts = [self.steering.log_prob(feat, self._start(trace))] if self.steering is not None else []
        if self.chain_decisions:
            mean, log_std, x_next = self._decision_stats(feat, trace)
            parts.append(self.mask_last_decision(gaussian_log_prob(x_next, mean, log_std.expand_as(mean))).sum(-1))
        return join_decisions(parts)

    def entropy(self, feat: Tensor, trace: Tensor) -> Tensor:
        """Closed-form per-step entropy (B, S): H*A (log std_k + 1/2 + log sqrt(2 pi)); independent of the weights."""
        parts = [self.steering.entropy(trace.shape[0])] if self.steering is not None else []
        s, d = self.chain_decisions, self.chunk * self.action_dim
        if s:
            ent = d * (self.step_std[self.num_steps - s :].log() + 0.5 + LOG_SQRT_2PI)
            parts.append(ent.to(trace.dtype).expand(trace.shape[0], s))
        return join_decisions(parts)

    def log_prob_and_entropy(self, feat: Tensor, trace: Tensor) -> tuple[Tensor, Tensor]:
        return self.log_prob(feat, trace), self.entropy(feat, trace)

    def imitation_loss(self, feat: Tensor, actions: Tensor) -> Tensor:
        """DDPM loss for target chunks (B, H, A) in [-1, 1]; each condition gets ``num_noise_samples`` draws."""
        if self.chain_frozen:
            raise steering_error(self, "imitation_loss")
        n = self.config.num_noise_samples
        x0 = actions.flatten(1).repeat_interleave(n, dim=0)  # (B*n, H*A)
        feat_rep = feat.repeat_interleave(n, dim=0)  # the encoder ran once; only its output is repeated
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.config.num_train_timesteps, (x0.shape[0],), device=x0.device)
        x_t = self.train_scheduler.add_noise(x0, noise, t)  # sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
        target = noise if self.config.prediction_type == "epsilon" else x0
        return F.mse_loss(self.denoiser(x_t, t, feat_rep), target)

    def divergence(
        self, feat: Tensor, trace: Tensor, teacher_head: ActionHead, teacher_feat: Tensor, kind: DivergenceKind
    ) -> Tensor:
        """Per-step divergence (B, S) between the student's and teacher's transitions at the student's states x_k.

        reverse_kl = KL(student || teacher), forward_kl = KL(teacher || student): closed form for
        diagonal Gaussians, summed over H*A. js: no closed form for two Gaussians with different
        means, so it is a reparameterized Monte-Carlo estimate (256 draws per state, as GaussianHead).
        """
        check_divergence_kind(kind)
        self._check_teacher(teacher_head)
        assert isinstance(teacher_head, DiffusionHead)
        return steered_divergence(self, teacher_head, feat, teacher_feat, kind,
                                  lambda: self._chain_divergence(feat, trace, teacher_head, teacher_feat, kind))

    def _chain_divergence(self, feat: Tensor, trace: Tensor, teacher_head: DiffusionHead, teacher_feat: Tensor,
                          kind: DivergenceKind) -> Tensor:
        """Per-step divergence (B, S) of the denoising decisions."""
        m_s, ls_s, _ = self._decision_stats(feat, trace)
        m_t, ls_t, _ = teacher_head._decision_stats(teacher_feat, trace, self.chain_decisions)
        return gaussian_divergence(m_s, ls_s, m_t, ls_t, kind)

    def _check_teacher(self, teacher: ActionHead) -> None:
        if not isinstance(teacher, DiffusionHead):
            raise TypeError(f"DiffusionHead.divergence needs a DiffusionHead teacher, got {type(teacher).__name__}")
        mine = (self.num_steps, self.config.num_train_timesteps, self.config.beta_schedule, self.chunk, self.action_dim)
        theirs = (teacher.num_steps, teacher.config.num_train_timesteps, teacher.config.beta_schedule,
                  teacher.chunk, teacher.action_dim)
        if mine != theirs or not torch.equal(self.timesteps, teacher.timesteps.to(self.timesteps.device)):
            raise ValueError("DiffusionHead.divergence: teacher schedule differs; (num_inference_steps, "
                             f"num_train_timesteps, beta_schedule, chunk, action_dim) student={mine}, teacher={theirs}")
