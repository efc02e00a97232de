"""``ActionChunk``: execute an action chunk (H, A) as up to H env steps.

A policy step emits a chunk of H actions; the env side runs them open-loop, sums the reward
and stops early when the episode ends, so one chunk never crosses an episode boundary:

    policy step t:   a_0   a_1   ...   a_{H-1}          (H, A)
    env steps:       s0 -> s1 -> ... -> s_k             k = chunk_steps <= H
    reward:          r_0 + r_1 + ... + r_{k-1}          (undiscounted; the algorithm discounts
                                                         across chunks with gamma ** chunk_steps)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.spaces import Box


def chunk_space(space: Box, chunk: int) -> Box:
    """The Box (H, A) of a chunk of H actions from a Box (A,)."""
    shape = (chunk, space.shape[0])
    return Box(low=np.broadcast_to(space.low, shape), high=np.broadcast_to(space.high, shape), dtype=space.dtype)


class ActionChunk(gym.Wrapper):
    """Wrap an env with a 1-D ``Box`` action space (A,) so that ``step`` takes a chunk (H, A).

    ``step(chunk (H, A)) -> (obs, reward, terminated, truncated, info)`` where ``reward`` is the
    sum over the executed steps, ``terminated`` / ``truncated`` are those of the last executed
    step, ``info`` is the last step's info plus ``info["chunk_steps"]`` (int, 1..H) and, if the
    env reports ``info["success"]``, ``info["success"]`` = success seen at any executed step
    (a success flag raised mid-chunk must not be lost). H = 1 is a plain step with that info.
    """

    def __init__(self, env: gym.Env, chunk: int) -> None:
        super().__init__(env)
        space = env.action_space
        if not isinstance(space, Box) or len(space.shape) != 1:
            raise ValueError(f"ActionChunk needs a 1-D Box action space (A,), got {space}")
        if int(chunk) < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.chunk = int(chunk)
        self.action_space = chunk_space(space, self.chunk)

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if np.shape(action) != self.action_space.shape:
            raise ValueError(
                f"expected an action chunk of shape (H, A) = {self.action_space.shape}, got {np.shape(action)}"
            )
        total = 0.0
        success = None
        for h in range(self.chunk):
            obs, reward, terminated, truncated, info = self.env.step(action[h])
            total += float(reward)
            if "success" in info:
                success = bool(success) or bool(info["success"])
            if terminated or truncated:
                break
        # A new dict: some envs hand out an info they keep mutating.
        info = {**info, "chunk_steps": h + 1}
        if success is not None:
            info["success"] = success
        return obs, total, bool(terminated), bool(truncated), info
