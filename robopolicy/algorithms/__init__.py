"""Algorithms: a config dataclass and an ``update(...) -> metrics`` object each."""

from robopolicy.algorithms.bc import BC, BCConfig
from robopolicy.algorithms.ppo import PPO, PPOConfig

__all__ = ["BC", "PPO", "BCConfig", "PPOConfig"]
