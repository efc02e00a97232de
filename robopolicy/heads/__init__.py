"""Registry of action heads: name -> (class, config dataclass)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from robopolicy.heads.base import ActionHead
from robopolicy.heads.diffusion import DiffusionHead, DiffusionHeadConfig
from robopolicy.heads.flow import FlowHead, FlowHeadConfig
from robopolicy.heads.gaussian import GaussianHead, GaussianHeadConfig
from robopolicy.heads.tokens import TokenHead, TokenHeadConfig

HEADS: dict[str, tuple[type[ActionHead], type]] = {
    "gaussian": (GaussianHead, GaussianHeadConfig),
    "flow": (FlowHead, FlowHeadConfig),
    "diffusion": (DiffusionHead, DiffusionHeadConfig),
    "tokens": (TokenHead, TokenHeadConfig),
}


def build_head(name: str, feat_dim: int, action_dim: int, chunk: int, options: dict[str, Any]) -> ActionHead:
    """Build a registered head; unknown names and option keys raise with what is allowed."""
    if name not in HEADS:
        raise ValueError(f"policy.head: unknown head {name!r}; registered heads: {sorted(HEADS)}")
    head_cls, cfg_cls = HEADS[name]
    allowed = {f.name for f in fields(cfg_cls)}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"policy.head_options: unknown key(s) {unknown} for head {name!r}; allowed: {sorted(allowed)}")
    return head_cls(feat_dim, action_dim, chunk, cfg_cls(**options))


__all__ = ["HEADS", "ActionHead", "DiffusionHead", "DiffusionHeadConfig", "FlowHead", "FlowHeadConfig", "GaussianHead", "GaussianHeadConfig",
           "TokenHead", "TokenHeadConfig", "build_head"]
