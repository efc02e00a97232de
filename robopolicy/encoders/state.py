"""State encoder: an MLP over observation.state (B, D) -> (B, F)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from robopolicy.encoders.config import EncoderConfig
from robopolicy.fastcall import global_hooks, has_hooks

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU}


class MLP(nn.Sequential):
    """nn.Sequential of Linear / activation layers (same modules, same parameter names) whose forward calls
    the functional ops directly: each submodule ``__call__`` costs ~5 us of Python on CPU, as much as a
    batch-1 layer's kernel. Same ops, same autograd graph; layers with hooks go through ``__call__``."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        if global_hooks():
            return super().forward(x)
        for m in self._modules.values():
            if has_hooks(m):  # type: ignore[arg-type]
                x = m(x)  # type: ignore[misc]
            elif type(m) is nn.Linear:
                x = F.linear(x, m.weight, m.bias)
            elif type(m) is nn.ReLU:
                x = torch.relu(x)
            elif type(m) is nn.Tanh:
                x = torch.tanh(x)
            else:
                x = m(x)  # type: ignore[misc]
        return x


def mlp(in_dim: int, hidden_sizes: list[int], activation: str, out_dim: int | None = None) -> nn.Sequential:
    """Linear-activation stack; an optional final linear layer without activation (an ``MLP``)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    dim = in_dim
    for width in hidden_sizes:
        layers += [nn.Linear(dim, width), ACTIVATIONS[activation]()]
        dim = width
    if out_dim is not None:
        layers.append(nn.Linear(dim, out_dim))
    return MLP(*layers)


class StateEncoder(nn.Module):
    """MLP over observation.state: (B, D) -> (B, F), F = hidden_sizes[-1] (or D for [])."""

    def __init__(self, state_dim: int, config: EncoderConfig):
        super().__init__()
        self.net = mlp(state_dim, list(config.hidden_sizes), config.activation)
        self.out_dim = config.hidden_sizes[-1] if config.hidden_sizes else state_dim

    def forward(self, state: Tensor) -> Tensor:
        return self.net(state)
