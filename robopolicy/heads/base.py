"""The one interface every action head implements (DESIGN.md, "ActionHead").

A head maps encoder features ``feat`` (B, F) to action chunks in *normalized* units
(B, H, A), usually in [-1, 1]; the Policy maps them to env units. Every head exposes its
inner decisions as a ``trace`` with per-decision log-probs (B, S), so one PPO /
distillation core can fine-tune any of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import torch
from torch import Tensor, nn

from robopolicy.types import ActionSample

DivergenceKind = Literal["reverse_kl", "forward_kl", "js"]
DIVERGENCE_KINDS = ("reverse_kl", "forward_kl", "js")


class ActionHead(nn.Module, ABC):
    """Abstract head. Shapes: feat (B, F); actions (B, H, A); logp (B, S)."""

    #: number of inner decisions per policy step (S)
    num_decisions: int
    #: actions per chunk (H) and action dimensions (A); every head sets them
    chunk: int
    action_dim: int
    #: the first n of the H actions the env runs per policy step (``env.execute``), set by ``set_executed``
    #: for ``algo.score_executed_only``; None: log-probs cover every dimension
    executed: int | None = None
    #: True when only a steering net trains (``steer: true`` on a chain head): the head's other weights and the
    #: policy's encoder are frozen
    chain_frozen: bool = False

    def set_executed(self, n: int | None) -> None:
        """Score only what the executed actions depend on: from now on ``sample`` and ``log_prob`` leave out
        the densities of the last decision's dimensions that belong to actions n..H-1 (the unexecuted ones).

        That decision outputs the chunk itself, so its noise on those dimensions reaches no executed action and
        no reward: its score term has zero mean under the advantage and adds only variance. Earlier decisions
        (denoising / flow steps) keep every dimension, since later steps compute the executed actions from
        them. For tokens (one decision per dimension, in (h, a) order) the unexecuted actions' tokens drop out;
        no executed token is conditioned on them. None or n = H scores everything again."""
        if n is not None and not 1 <= int(n) <= self.chunk:
            raise ValueError(f"{type(self).__name__}.set_executed: n must be None or in 1..{self.chunk}, got {n}")
        if self.chain_frozen and n is not None and int(n) != self.chunk:
            raise ValueError(f"{type(self).__name__}.set_executed: not with steer=true: its one decision, the starting "
                             "noise, moves every action of the chunk, so there is nothing to leave out")
        self.executed = None if n is None or int(n) == self.chunk else int(n)

    def executed_dims(self, like: Tensor) -> Tensor | None:
        """(H*A,) weights in ``like``'s dtype and device: 1 on the executed actions' dimensions, 0 on the rest;
        None when every action runs."""
        if self.executed is None:
            return None
        d = self.chunk * self.action_dim
        return (torch.arange(d, device=like.device) < self.executed * self.action_dim).to(like.dtype)

    def mask_unexecuted(self, per_dim: Tensor) -> Tensor:
        """Log-densities (..., H*A), one per action dimension (or token), with the unexecuted actions' zeroed
        (``set_executed``); unchanged when every action runs."""
        w = self.executed_dims(per_dim)
        return per_dim if w is None else per_dim * w

    def mask_last_decision(self, per_dim: Tensor) -> Tensor:
        """Per-dimension log-densities (B, S, H*A) of a chain's decisions with the last decision's unexecuted
        dimensions zeroed (``set_executed``); unchanged when every action runs."""
        if self.executed is None:
            return per_dim
        return torch.cat([per_dim[:, :-1], self.mask_unexecuted(per_dim[:, -1:])], dim=1)

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
