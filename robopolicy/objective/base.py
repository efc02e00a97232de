"""The shared objective: a weighted sum of small terms evaluated on one minibatch.

A ``MiniBatch`` is a flat (N, ...) view of a rollout plus what the algorithm computed
(advantages, returns, old log-probs). ``ForwardCache`` runs each network at most once per
minibatch, so terms that need the same features or log-probs share the work.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from robopolicy.critic import ValueCritic
from robopolicy.policy import Policy
from robopolicy.types import Obs


@dataclass
class MiniBatch:
    obs: Obs            # (N, ...)
    trace: Tensor       # (N, ...)
    logp: Tensor        # (N, S) behaviour log-probs
    advantages: Tensor  # (N,)
    returns: Tensor     # (N,)
    value: Tensor       # (N,) critic value at collection
    norm_obs: Obs | None = None  # (N, ...) obs through the policy normalizer, when precomputed
    extras: dict[str, Tensor] = field(default_factory=dict)

    def index(self, idx: Tensor) -> MiniBatch:
        """Rows ``idx`` of every field."""
        return self._map(lambda v: v[idx])

    def slice(self, start: int, stop: int) -> MiniBatch:
        """Rows ``start:stop`` of every field, as views (no copy)."""
        return self._map(lambda v: v[start:stop])

    def _map(self, rows) -> MiniBatch:
        return MiniBatch(
            obs={k: rows(v) for k, v in self.obs.items()},
            trace=rows(self.trace),
            logp=rows(self.logp),
            advantages=rows(self.advantages),
            returns=rows(self.returns),
            value=rows(self.value),
            norm_obs=None if self.norm_obs is None else {k: rows(v) for k, v in self.norm_obs.items()},
            extras={k: rows(v) for k, v in self.extras.items()},
        )

    def nbytes(self) -> int:
        tensors = [*self.obs.values(), self.trace, self.logp, self.advantages, self.returns, self.value,
                   *(self.norm_obs or {}).values(), *self.extras.values()]
        return sum(t.nbytes for t in tensors)


class ForwardCache:
    """Lazily computed network outputs for one minibatch (each computed once)."""

    def __init__(self, policy: Policy, critic: ValueCritic | None, mb: MiniBatch):
        self.policy, self.critic, self.mb = policy, critic, mb
        self._cache: dict[str, Tensor] = {}

    def _get(self, key: str, fn) -> Tensor:
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    @property
    def norm_obs(self) -> Obs:
        if self.mb.norm_obs is not None:
            return self.mb.norm_obs
        if "norm_obs" not in self._cache:
            self._cache["norm_obs"] = self.policy.normalizer(self.mb.obs)  # type: ignore[assignment]
        return self._cache["norm_obs"]  # type: ignore[return-value]

    @property
    def feat(self) -> Tensor:
        if "feat" not in self._cache:
            feat, estimate = self.policy.encoder.features_and_estimate(self.norm_obs)
            self._cache["feat"] = feat
            if estimate is not None:
                self._cache["estimate"] = estimate
        return self._cache["feat"]

    @property
    def estimate(self) -> Tensor | None:
        """(N, K) normalized privileged estimates of a camera student (encoder.estimate_privileged), else None."""
        _ = self.feat  # computes both
        return self._cache.get("estimate")

    @property
    def logp(self) -> Tensor:
        """(N, S) log-prob of the stored traces under the current policy."""
        if "logp" not in self._cache:
            self._cache["logp"], self._cache["entropy"] = self.policy.head.log_prob_and_entropy(
                self.feat, self.mb.trace
            )
        return self._cache["logp"]

    @property
    def entropy(self) -> Tensor:
        """(N, S) entropy (estimate) of the current policy, computed with ``logp``."""
        _ = self.logp  # computes both
        return self._cache["entropy"]

    @property
    def value(self) -> Tensor:
        if self.critic is None:
            raise RuntimeError("this objective has a value term but no critic was given")
        return self._get("value", lambda: self.critic(self.norm_obs))


class ObjectiveTerm(nn.Module):
    """One term of the loss. ``forward`` returns (scalar loss, metrics).

    Metrics are detached scalar tensors, not floats: converting costs a sync per value and
    per minibatch, so the algorithm averages them once per update.
    """

    name: str = "term"

    def forward(self, cache: ForwardCache) -> tuple[Tensor, dict[str, Tensor]]:  # pragma: no cover - interface
        raise NotImplementedError


class Objective(nn.Module):
    """sum_i w_i * term_i(minibatch); terms with weight 0 are skipped."""

    def __init__(self, terms: dict[str, tuple[ObjectiveTerm, float]]):
        super().__init__()
        self.terms = nn.ModuleDict({name: term for name, (term, _) in terms.items()})
        self.weights = {name: float(w) for name, (_, w) in terms.items()}

    def forward(self, cache: ForwardCache) -> tuple[Tensor, dict[str, Tensor]]:
        total: Tensor | None = None
        metrics: dict[str, Tensor] = {}
        for name, term in self.terms.items():
            w = self.weights[name]
            if w == 0.0:
                continue
            loss, m = term(cache)
            # A weight of 1 needs no multiply and a weighted add is one op: fewer autograd nodes, same sum.
            if total is None:
                total = loss if w == 1.0 else loss * w
            else:
                total = total + loss if w == 1.0 else torch.add(total, loss, alpha=w)
            metrics[f"loss/{name}"] = loss.detach()
            metrics.update({f"{name}/{k}": v for k, v in m.items()})
        if total is None:
            raise ValueError("objective has no term with a non-zero weight")
        return total, metrics
