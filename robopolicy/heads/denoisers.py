"""DiT-style transformer denoiser, the alternative to the heads' MLPs (``denoiser: transformer``).

The noisy chunk x (N, H*A) is read as H tokens of A values (one per action step), and the
condition c = MLP(emb(t)) + Linear(feat) drives every block through adaptive LayerNorm with a
zero-initialized gate (adaLN-Zero, Peebles & Xie 2023):
    (shift1, scale1, gate1, shift2, scale2, gate2) = Linear(SiLU(c))          zeros at init
    h = h + gate1 * Attn(LN(h) (1 + scale1) + shift1)
    h = h + gate2 * MLP(LN(h) (1 + scale2) + shift2)
    out = Linear(LN(h) (1 + scale) + shift)                                  (N, H, A) -> (N, H*A)
so every block starts as the identity and the network as a function of the condition only.
Used by DiffusionHead (t = integer DDPM timestep) and FlowHead (t in [0, 1], ``time_scale`` 1000).
Glossary: N rows (batch x samples), H chunk, A action dim, F feature dim, W width.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

DENOISERS = ("mlp", "transformer")


def check_denoiser(kind: str, where: str) -> None:
    if kind not in DENOISERS:
        raise ValueError(f"{where}.denoiser: unknown {kind!r}; expected one of {DENOISERS}")


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """(N,) times -> (N, dim): [cos(t w_i), sin(t w_i)], w_i = max_period^(-i / (dim/2)) (DiT / ADM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float().unsqueeze(-1) * freqs
    return torch.cat([args.cos(), args.sin()], dim=-1)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """x (N, H, W) with per-row shift / scale (N, W)."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class DiTBlock(nn.Module):
    """Self-attention over the H action tokens + MLP, both modulated and gated by the condition (adaLN-Zero)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(approximate="tanh"), nn.Linear(4 * width, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.ada[-1].weight)
        nn.init.zeros_(self.ada[-1].bias)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)
        y = modulate(self.norm1(h), shift1, scale1)
        h = h + gate1.unsqueeze(1) * self.attn(y, y, y, need_weights=False)[0]
        return h + gate2.unsqueeze(1) * self.mlp(modulate(self.norm2(h), shift2, scale2))


class TransformerDenoiser(nn.Module):
    """f_theta(x (N, H*A), t (N,), feat (N, F)) -> (N, H*A), the same call as the heads' MLPs."""

    def __init__(self, feat_dim: int, chunk: int, action_dim: int, width: int = 128, depth: int = 2, heads: int = 4,
                 time_embed_dim: int = 32, time_scale: float = 1.0):
        super().__init__()
        if width % heads:
            raise ValueError(f"dit_width={width} must be divisible by dit_heads={heads}")
        if depth < 1:
            raise ValueError(f"dit_depth must be >= 1, got {depth}")
        self.chunk, self.action_dim, self.time_embed_dim, self.time_scale = chunk, action_dim, time_embed_dim, time_scale
        self.embed_in = nn.Linear(action_dim, width)
        self.pos = nn.Parameter(torch.randn(1, chunk, width) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(time_embed_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.feat_proj = nn.Linear(feat_dim, width)
        self.blocks = nn.ModuleList([DiTBlock(width, heads) for _ in range(depth)])
        self.norm_out = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        nn.init.zeros_(self.ada_out[-1].weight)
        nn.init.zeros_(self.ada_out[-1].bias)
        self.out = nn.Linear(width, action_dim)

    def forward(self, x: Tensor, t: Tensor, feat: Tensor) -> Tensor:
        n = x.shape[0]
        c = self.time_mlp(timestep_embedding(t * self.time_scale, self.time_embed_dim)) + self.feat_proj(feat)
        h = self.embed_in(x.view(n, self.chunk, self.action_dim)) + self.pos
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.ada_out(c).chunk(2, dim=-1)
        return self.out(modulate(self.norm_out(h), shift, scale)).reshape(n, self.chunk * self.action_dim)
