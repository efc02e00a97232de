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

    def forward(self, cache: ForwardCache) -> tuple[Tensor, dict[str, float]]:
        mb, v = cache.mb, cache.value
        err = (v - mb.returns).square()
        if self.clip_vf is not None:
            v_clipped = mb.value + (v - mb.value).clamp(-self.clip_vf, self.clip_vf)
            err = torch.max(err, (v_clipped - mb.returns).square())
        with torch.no_grad():
            var_r = mb.returns.var()
            explained = 1 - (mb.returns - v).var() / var_r if var_r > 0 else torch.tensor(float("nan"))
        return err.mean(), {"explained_variance": float(explained)}
