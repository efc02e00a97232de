"""`value`: critic regression to the GAE returns, optionally clipped around the old value.

    L_V = mean (V(s) - R)^2     or, clipped,   mean max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2)
"""

from __future__ import annotations

import torch
from torch import Tensor

from robopolicy.objective.base import ForwardCache, ObjectiveTerm


class ValueTerm(ObjectiveTerm):
    name = "value"

    def __init__(self, clip_vf: float | None = None):
        super().__init__()
        self.clip_vf = clip_vf

    def forward(self, cache: ForwardCache) -> tuple[Tensor, dict[str, Tensor]]:
        mb, v = cache.mb, cache.value
        err = (v - mb.returns).square()
        if self.clip_vf is not None:
            v_clipped = mb.value + (v - mb.value).clamp(-self.clip_vf, self.clip_vf)
            err = torch.max(err, (v_clipped - mb.returns).square())
        return err.mean(), {}


def explained_variance(pred: Tensor, target: Tensor) -> float:
    """1 - Var(target - pred) / Var(target): 1 is a perfect critic, 0 predicts the mean."""
    var = target.var()
    return float(1 - (target - pred).var() / var) if var > 0 else float("nan")
