"""State encoder: an MLP over observation.state (B, D) -> (B, F)."""

from __future__ import annotations

from torch import Tensor, nn

from robopolicy.encoders.config import EncoderConfig

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU}


def mlp(in_dim: int, hidden_sizes: list[int], activation: str, out_dim: int | None = None) -> nn.Sequential:
    """Linear-activation stack; an optional final linear layer without activation."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    dim = in_dim
    for width in hidden_sizes:
        layers += [nn.Linear(dim, width), ACTIVATIONS[activation]()]
        dim = width
    if out_dim is not None:
        layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)


class StateEncoder(nn.Module):
    """MLP over observation.state: (B, D) -> (B, F), F = hidden_sizes[-1] (or D for [])."""

    def __init__(self, state_dim: int, config: EncoderConfig):
        super().__init__()
        self.net = mlp(state_dim, list(config.hidden_sizes), config.activation)
        self.out_dim = config.hidden_sizes[-1] if config.hidden_sizes else state_dim

    def forward(self, state: Tensor) -> Tensor:
        return self.net(state)
