"""Algorithms: a config dataclass and an ``update(rollout) -> metrics`` object each."""

from robopolicy.algorithms.ppo import PPO, PPOConfig

__all__ = ["PPO", "PPOConfig"]
