"""Objective terms of the shared fine-tuning core (DESIGN.md, "Objective")."""

from robopolicy.objective.base import ForwardCache, MiniBatch, Objective, ObjectiveTerm
from robopolicy.objective.bc import BCTerm
from robopolicy.objective.divergence import DAggerTerm, DivergenceTerm
from robopolicy.objective.estimate import EstimateTerm
from robopolicy.objective.pg import EntropyTerm, PPOClipTerm
from robopolicy.objective.value import ValueTerm

__all__ = [
    "BCTerm", "DAggerTerm", "DivergenceTerm", "EntropyTerm", "EstimateTerm", "ForwardCache", "MiniBatch", "Objective",
    "ObjectiveTerm", "PPOClipTerm", "ValueTerm",
]
