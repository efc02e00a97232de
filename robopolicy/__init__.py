"""robopolicy: expressive action heads trained by one on-policy fine-tuning core.

Import map: ``robopolicy.types`` (keys, glossary, containers), ``robopolicy.policy``
(Policy, save/load), ``robopolicy.heads`` (ActionHead and registry), ``robopolicy.objective``
(loss terms), ``robopolicy.algorithms`` (PPO), ``robopolicy.trainer`` (the loop).
"""

__version__ = "0.1.0"
