"""Two tiny envs with a value known in closed form, for testing bootstrapping at episode ends.

Both observe a constant zero vector (2,), so a critic cannot tell how far the episode has run:
it can only be right if the algorithm treats the two kinds of episode end correctly.

``robopolicy/ConstantReward-v0``: r = 1 every step, never terminates, truncated (time limit)
after ``max_steps``. Truncation is not a true end, so the value of every state is the
infinite-horizon one:  V = sum_t gamma^t = 1 / (1 - gamma).

``robopolicy/TerminalReward-v0``: r = 1 every step, terminated (a true end) after
``max_steps``. From the state with k steps left, V = (1 - gamma^k) / (1 - gamma).
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.spaces import Box


class ConstantRewardEnv(gym.Env):
    """Obs (2,) float32 zeros, action Box(-1, 1, (1,)), reward 1.0, truncated after ``max_steps``."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 30}
    terminal = False  # the subclass ends episodes by termination instead

    def __init__(self, max_steps: int = 5, render_mode: str | None = None) -> None:
        if int(max_steps) < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.max_steps = int(max_steps)
        self.render_mode = render_mode
        self.observation_space = Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = Box(-1.0, 1.0, (1,), np.float32)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action: np.ndarray):
        self._t += 1
        end = self._t >= self.max_steps
        return np.zeros(2, np.float32), 1.0, end and self.terminal, end and not self.terminal, {}

    def render(self) -> np.ndarray:
        """A (16, 16, 3) uint8 frame whose brightness encodes the step count (renders need no GL)."""
        return np.full((16, 16, 3), min(255, 40 * self._t), np.uint8)


class TerminalRewardEnv(ConstantRewardEnv):
    """Same as ``ConstantRewardEnv`` but the episode terminates (not truncates) after ``max_steps``."""

    terminal = True


def register() -> None:
    """Register both ids with gymnasium (idempotent: ``import envs`` may run in many processes)."""
    for env_id, cls in (
        ("robopolicy/ConstantReward-v0", "ConstantRewardEnv"),
        ("robopolicy/TerminalReward-v0", "TerminalRewardEnv"),
    ):
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=f"envs.toy:{cls}")
