"""State-value critic V(s) on the chunk-level MDP; may read privileged state (asymmetric)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from robopolicy.encoders import mlp
from robopolicy.types import OBS_PRIVILEGED, OBS_STATE, Obs


@dataclass
class CriticConfig:
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    """Widths of the value MLP."""
    activation: str = "relu"
    """One of relu, tanh, elu, gelu."""
    use_privileged: bool = False
    """Concatenate observation.privileged (simulation-only state) to the input."""


class ValueCritic(nn.Module):
    """(normalized) obs dict -> V (B,)."""

    def __init__(self, state_dim: int, config: CriticConfig, privileged_dim: int = 0):
        super().__init__()
        self.config = config
        in_dim = state_dim + (privileged_dim if config.use_privileged else 0)
        self.net = mlp(in_dim, list(config.hidden_sizes), config.activation, out_dim=1)
        last = self.net[-1]
        nn.init.orthogonal_(last.weight, gain=1.0)
        nn.init.zeros_(last.bias)

    def forward(self, obs: Obs) -> Tensor:
        x = obs[OBS_STATE]
        if self.config.use_privileged:
            x = torch.cat([x, obs[OBS_PRIVILEGED]], dim=-1)
        return self.net(x).squeeze(-1)
