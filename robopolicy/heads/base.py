"""The one interface every action head implements (DESIGN.md, "ActionHead").

A head maps encoder features ``feat`` (B, F) to action chunks in *normalized* units
(B, H, A), usually in [-1, 1]; the Policy maps them to env units. Every head exposes its
inner decisions as a ``trace`` with per-decision log-probs (B, S), so one PPO /
distillation core can fine-tune any of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

from torch import Tensor, nn

from robopolicy.types import ActionSample

DivergenceKind = Literal["reverse_kl", "forward_kl", "js"]
DIVERGENCE_KINDS = ("reverse_kl", "forward_kl", "js")


class ActionHead(nn.Module, ABC):
    """Abstract head. Shapes: feat (B, F); actions (B, H, A); logp (B, S)."""

    #: number of inner decisions per policy step (S)
    num_decisions: int

    @abstractmethod
    def sample(self, feat: Tensor, deterministic: bool = False) -> ActionSample:
        """Draw an action chunk (normalized units) with its trace and logp (B, S)."""

    @abstractmethod
    def log_prob(self, feat: Tensor, trace: Tensor) -> Tensor:
        """Differentiable log-prob (B, S) of a stored trace under the current weights."""

    @abstractmethod
    def imitation_loss(self, feat: Tensor, actions: Tensor) -> Tensor:
        """Scalar BC / pretraining loss for target chunks (B, H, A) in normalized units."""

    @abstractmethod
    def divergence(
        self, feat: Tensor, trace: Tensor, teacher_head: ActionHead, teacher_feat: Tensor, kind: DivergenceKind
    ) -> Tensor:
        """Per-decision divergence (B, S) between this head and a teacher along ``trace``."""

    def entropy(self, feat: Tensor, trace: Tensor) -> Tensor:
        """Entropy estimate (B, S). Default: -log p of the trace (unbiased when the trace
        was sampled from the current policy); heads with a closed form override it."""
        return -self.log_prob(feat, trace)

    def log_prob_and_entropy(self, feat: Tensor, trace: Tensor) -> tuple[Tensor, Tensor]:
        """Both at once; heads override it to share one pass of their network."""
        logp = self.log_prob(feat, trace)
        return logp, -logp


def check_divergence_kind(kind: str) -> None:
    if kind not in DIVERGENCE_KINDS:
        raise ValueError(f"divergence kind must be one of {DIVERGENCE_KINDS}, got {kind!r}")
