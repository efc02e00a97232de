"""Objective terms of the shared fine-tuning core (DESIGN.md, "Objective")."""

from robopolicy.objective.base import ForwardCache, MiniBatch, Objective, ObjectiveTerm
from robopolicy.objective.pg import EntropyTerm, PPOClipTerm
from robopolicy.objective.value import ValueTerm

__all__ = ["EntropyTerm", "ForwardCache", "MiniBatch", "Objective", "ObjectiveTerm", "PPOClipTerm", "ValueTerm"]
