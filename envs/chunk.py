"""``ActionChunk``: execute an action chunk (H, A) as up to H env steps.

A policy step emits a chunk of H actions; the env side runs them open-loop, sums the reward
and stops early when the episode ends, so one chunk never crosses an episode boundary:

    policy step t:   a_0   a_1   ...   a_{H-1}          (H, A)
    env steps:       s0 -> s1 -> ... -> s_k             k = chunk_steps <= H
    reward:          r_0 + r_1 + ... + r_{k-1}          (undiscounted; the algorithm discounts
                                                         across chunks with gamma ** chunk_steps)

``execute`` = n < H runs only the first n actions of each chunk before the policy predicts the next one:
Diffusion Policy's action horizon (n) inside its prediction horizon (H). The policy still predicts, and is scored
on, the whole chunk; the env's feedback comes every n steps instead of every H.
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


def check_execute(execute: int | None, chunk: int) -> int:
    """Env steps per chunk: ``execute`` if it lies in 1..chunk, ``chunk`` when it is None; else a ValueError."""
    if execute is None:
        return int(chunk)
    if not 1 <= int(execute) <= int(chunk):
        raise ValueError(f"env.execute must be null or in 1..env.chunk ({chunk}), got {execute}")
    return int(execute)


class ActionChunk(gym.Wrapper):
    """Wrap an env with a 1-D ``Box`` action space (A,) so that ``step`` takes a chunk (H, A).

    ``step(chunk (H, A)) -> (obs, reward, terminated, truncated, info)`` where ``reward`` is the
    sum over the executed steps, ``terminated`` / ``truncated`` are those of the last executed
    step, ``info`` is the last step's info plus ``info["chunk_steps"]`` (int, 1..H) and, if the
    env reports ``info["success"]``, ``info["success"]`` = success seen at any executed step
    (a success flag raised mid-chunk must not be lost). H = 1 is a plain step with that info.
    ``execute``: env steps run per chunk, its first n actions (1 <= n <= H); None runs all H.
    """

    def __init__(self, env: gym.Env, chunk: int, execute: int | None = None) -> None:
        super().__init__(env)
        space = env.action_space
        if not isinstance(space, Box) or len(space.shape) != 1:
            raise ValueError(f"ActionChunk needs a 1-D Box action space (A,), got {space}")
        if int(chunk) < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.chunk = int(chunk)
        self.execute = check_execute(execute, self.chunk)
        self.action_space = chunk_space(space, self.chunk)

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if np.shape(action) != self.action_space.shape:
            raise ValueError(
                f"expected an action chunk of shape (H, A) = {self.action_space.shape}, got {np.shape(action)}"
            )
        total = 0.0
        success = None
        for h in range(self.execute):
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
