"""`distill` and `anchor`: a per-decision divergence to a frozen reference policy along the
student's own traces.

    L = mean_{n,s} D_s(pi_theta(. | x_{n,s}), pi_ref(. | x_{n,s}))      (N, S) from head.divergence

The student acted (on-policy), so the states x_{n,s} (env observations, and the inner states of
a denoising chain or token prefix) are the student's own; the reference only scores them.
``distill`` uses a teacher (any Policy with the same head family, e.g. a privileged-state
expert); ``anchor`` uses the pretrained policy fine-tuning started from. D is reverse KL
KL(student || reference) by default (mode seeking), forward KL or Jensen-Shannon on request.
The reference runs without gradients: the loss and its gradient are exactly zero when the
student equals it.

`DAggerTerm` is the baseline the issue compares against: the teacher's deterministic action
on the student's states is an imitation label, ``head.imitation_loss(feat, a_teacher)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from robopolicy.heads.base import DivergenceKind, check_divergence_kind
from robopolicy.objective.base import ForwardCache, ObjectiveTerm
from robopolicy.policy import Policy


class DivergenceTerm(ObjectiveTerm):
    """D(student || reference) per inner decision on the rollout's traces; the reference is frozen."""

    def __init__(self, reference: Policy, kind: DivergenceKind = "reverse_kl", name: str = "distill"):
        super().__init__()
        check_divergence_kind(kind)
        self.name, self.kind = name, kind
        # Kept outside the module tree so the reference is neither trained nor saved with the objective.
        self._reference = [reference.eval().requires_grad_(False)]

    @property
    def reference(self) -> Policy:
        return self._reference[0]

    def forward(self, cache: ForwardCache) -> tuple[Tensor, dict[str, Tensor]]:
        mb = cache.mb
        with torch.no_grad():
            ref_feat = self.reference.features(mb.obs)
        div = cache.policy.head.divergence(cache.feat, mb.trace, self.reference.head, ref_feat, self.kind)  # (N, S)
        loss = div.mean()
        return loss, {"divergence": loss.detach(), "divergence_max": div.detach().max()}


class DAggerTerm(ObjectiveTerm):
    """Imitation of the teacher's deterministic action chunk on the student's visited states."""

    name = "dagger"

    def __init__(self, teacher: Policy):
        super().__init__()
        self._teacher = [teacher.eval().requires_grad_(False)]

    def forward(self, cache: ForwardCache) -> tuple[Tensor, dict[str, Tensor]]:
        policy, teacher = cache.policy, self._teacher[0]
        with torch.no_grad():
            label = teacher.act(cache.mb.obs, deterministic=True).actions          # (N, H, A) env units
            target = policy.scaler.from_env(label).clamp(-1.0, 1.0)               # the student's [-1, 1]
        loss = policy.head.imitation_loss(cache.feat, target)
        return loss, {}
