"""ActionChunk: H steps per call, summed reward, early stop at an episode end, chunk_steps, success."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.spaces import Box

from envs import ActionChunk


class Counting(gym.Env):
    """Reward t at step t (so a sum shows which steps ran); success at step ``success_at`` only."""

    def __init__(self, end_at: int = 100, terminal: bool = True, success_at: int | None = None) -> None:
        self.observation_space = Box(-np.inf, np.inf, (1,), np.float64)
        self.action_space = Box(-2.0, 2.0, (2,), np.float32)
        self.end_at, self.terminal, self.success_at = end_at, terminal, success_at
        self.actions: list[np.ndarray] = []

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1), {}

    def step(self, action):
        self.t += 1
        self.actions.append(np.array(action))
        end = self.t >= self.end_at
        info = {} if self.success_at is None else {"success": self.t == self.success_at}
        return np.array([float(self.t)]), float(self.t), end and self.terminal, end and not self.terminal, info


def test_action_space_is_chunked():
    env = ActionChunk(Counting(), 3)
    assert env.action_space.shape == (3, 2)
    np.testing.assert_array_equal(env.action_space.low, -2.0 * np.ones((3, 2)))
    np.testing.assert_array_equal(env.action_space.high, 2.0 * np.ones((3, 2)))


def test_runs_h_steps_in_order_and_sums_reward():
    inner = Counting()
    env = ActionChunk(inner, 3)
    env.reset()
    chunk = np.arange(6, dtype=np.float32).reshape(3, 2) / 10
    obs, reward, terminated, truncated, info = env.step(chunk)
    assert reward == 1 + 2 + 3
    assert info["chunk_steps"] == 3
    assert obs[0] == 3.0 and not terminated and not truncated
    np.testing.assert_array_equal(np.stack(inner.actions), chunk)  # executed row by row, in order


@pytest.mark.parametrize("terminal", [True, False], ids=["terminated", "truncated"])
def test_stops_early_at_episode_end(terminal: bool):
    env = ActionChunk(Counting(end_at=5, terminal=terminal), 3)
    env.reset()
    env.step(np.zeros((3, 2), np.float32))  # steps 1..3
    _, reward, terminated, truncated, info = env.step(np.zeros((3, 2), np.float32))  # steps 4, 5, then the end
    assert info["chunk_steps"] == 2
    assert reward == 4 + 5
    assert (terminated, truncated) == (terminal, not terminal)


def test_h1_is_a_plain_step():
    env = ActionChunk(Counting(), 1)
    env.reset()
    _, reward, _, _, info = env.step(np.ones((1, 2), np.float32))
    assert reward == 1.0 and info["chunk_steps"] == 1


def test_success_anywhere_in_the_chunk_is_kept():
    env = ActionChunk(Counting(success_at=2), 3)
    env.reset()
    assert env.step(np.zeros((3, 2), np.float32))[4]["success"] is True  # success at step 2 of 3
    assert env.step(np.zeros((3, 2), np.float32))[4]["success"] is False
    plain = ActionChunk(Counting(), 2)
    plain.reset()
    assert "success" not in plain.step(np.zeros((2, 2), np.float32))[4]


def test_time_limit_inside_a_chunk_ends_it():
    env = ActionChunk(gym.make("robopolicy/ConstantReward-v0", max_steps=100, max_episode_steps=4), 3)
    env.reset(seed=0)
    env.step(np.zeros((3, 1), np.float32))
    _, reward, terminated, truncated, info = env.step(np.zeros((3, 1), np.float32))
    assert (reward, terminated, truncated, info["chunk_steps"]) == (1.0, False, True, 1)


def test_bad_chunk_and_shape_raise():
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        ActionChunk(Counting(), 0)
    env = ActionChunk(Counting(), 3)
    env.reset()
    with pytest.raises(ValueError, match=r"\(3, 2\).*got \(2, 3\)"):
        env.step(np.zeros((2, 3), np.float32))


def test_execute_runs_the_first_n_actions_of_the_chunk():
    inner = Counting()
    env = ActionChunk(inner, 3, execute=2)
    assert env.action_space.shape == (3, 2)  # the policy still predicts all H
    env.reset()
    chunk = np.arange(6, dtype=np.float32).reshape(3, 2) / 10
    obs, reward, _, _, info = env.step(chunk)
    assert (reward, info["chunk_steps"], obs[0]) == (1 + 2, 2, 2.0)
    np.testing.assert_array_equal(np.stack(inner.actions), chunk[:2])  # the third action never ran
    env.step(chunk)
    assert inner.t == 4


@pytest.mark.parametrize("execute", [0, 4])
def test_execute_outside_one_to_h_raises(execute):
    with pytest.raises(ValueError, match=rf"env.execute must be null or in 1..env.chunk \(3\), got {execute}"):
        ActionChunk(Counting(), 3, execute=execute)
