"""`estimate`: a camera student's estimate of the privileged state, regressed onto it where simulation observes it.

    L_est = mean_i huber(est_i(o_cam, o_state) - normalize(o_privileged)_i)     over encoder.estimate_privileged

Huber (quadratic within 1 std, linear beyond): on the student's own rollouts a normalized target can sit far
outside the demos' range (a tilted cube, whose quaternion never moved in the demos, is 10 stds off), and a
squared error there would swamp every other entry and term.

The estimator is part of the policy's encoder (EncoderConfig.estimate_privileged); this term is what keeps it
grounded while the other terms (distill, bc, pg) train the whole student end to end. Acting never needs
observation.privileged: only this loss does.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from robopolicy.objective.base import ForwardCache, ObjectiveTerm
from robopolicy.types import OBS_PRIVILEGED, Obs


def estimate_loss(estimate: Tensor, norm_obs: Obs, index: Tensor) -> Tensor:
    """Huber loss (delta 1) between the (B, K) normalized estimates and the normalized privileged entries ``index``."""
    if OBS_PRIVILEGED not in norm_obs:
        raise KeyError(f"the estimate term needs {OBS_PRIVILEGED!r} in the training observations (keys: "
                       f"{sorted(norm_obs)}); for our arm: env.kwargs.privileged=true")
    return F.huber_loss(estimate, norm_obs[OBS_PRIVILEGED].index_select(1, index), delta=1.0)


class EstimateTerm(ObjectiveTerm):
    name = "estimate"

    def forward(self, cache: ForwardCache) -> tuple[Tensor, dict[str, Tensor]]:
        estimate = cache.estimate
        if estimate is None:
            raise ValueError("the estimate term needs a policy with encoder.estimate_privileged")
        return estimate_loss(estimate, cache.norm_obs, cache.policy.encoder.estimate_index), {}
