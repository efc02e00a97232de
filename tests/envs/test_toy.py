"""Toy envs: registered ids, constant obs and reward, truncation vs termination after max_steps."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)


@pytest.mark.parametrize(
    ("env_id", "terminal"), [("robopolicy/ConstantReward-v0", False), ("robopolicy/TerminalReward-v0", True)]
)
@pytest.mark.parametrize("max_steps", [1, 5])
def test_episode_ends_after_max_steps(env_id: str, terminal: bool, max_steps: int):
    env = gym.make(env_id, max_steps=max_steps)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2,) and obs.dtype == np.float32 and not obs.any()
    assert env.action_space.shape == (1,)
    for t in range(1, max_steps + 1):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert reward == 1.0 and not obs.any()
        end = t == max_steps
        assert (terminated, truncated) == (end and terminal, end and not terminal), f"step {t}"


def test_default_is_five_steps():
    env = gym.make("robopolicy/ConstantReward-v0")
    env.reset(seed=0)
    ends = [env.step(np.zeros(1, np.float32))[3] for _ in range(5)]
    assert ends == [False] * 4 + [True]


def test_render_is_a_small_frame():
    env = gym.make("robopolicy/ConstantReward-v0", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (16, 16, 3) and frame.dtype == np.uint8
