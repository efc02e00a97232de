"""`bc`: the head's imitation loss on a minibatch of demonstrations, beside the on-policy terms.

    L_bc = head.imitation_loss(features(o_demo), a_demo)        (DAPG: weight decays per update)

Each call draws a fresh demo minibatch, so PPO's minibatches and the demo minibatches advance
together; the demo observations go through the current policy's normalizer.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor

from robopolicy.objective.base import ForwardCache, ObjectiveTerm


class DemoBatches(Protocol):
    def next(self) -> dict[str, Any]:
        """``{"obs": {key: (B, ...)}, "actions": (B, H, A) env units}``."""
        ...


class BCTerm(ObjectiveTerm):
    name = "bc"

    def __init__(self, demos: DemoBatches):
        super().__init__()
        self.demos = demos

    def forward(self, cache: ForwardCache) -> tuple[Tensor, dict[str, Tensor]]:
        policy = cache.policy
        batch = self.demos.next()
        target = policy.scaler.from_env(batch["actions"]).clamp(-1.0, 1.0)
        return policy.head.imitation_loss(policy.features(batch["obs"], augment=True), target), {}
