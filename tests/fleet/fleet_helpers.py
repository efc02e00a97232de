"""Shared pieces of the fleet tests: synthetic episodes, specs, an in-process learner."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import ClassVar

import gymnasium as gym
import numpy as np

from fleet.codec import EpisodePiece
from fleet.proto import fleet_pb2 as pb

D, A = 5, 2


def make_spec(robot_id: str, cameras: tuple[tuple[str, int, int], ...] = ()) -> pb.RobotSpec:
    spec = pb.RobotSpec(robot_id=robot_id, embodiment="test", state_dim=D, action_dim=A, software_version="t",
                        task="test task", fps=10, action_low=[-1.0] * A, action_high=[1.0] * A)
    for name, h, w in cameras:
        spec.cameras.add(name=name, height=h, width=w, encoding="png")
    return spec


def make_piece(T: int, seed: int = 0, cameras: tuple[tuple[str, int, int], ...] = (), version: int = 0,
               done_last: bool = True) -> EpisodePiece:
    rng = np.random.default_rng(seed)
    done = np.zeros(T, bool)
    done[-1] = done_last
    return EpisodePiece(
        state=rng.normal(size=(T, D)).astype(np.float32), action=rng.uniform(-1, 1, (T, A)).astype(np.float32),
        reward=rng.normal(size=T).astype(np.float32), done=done, intervention=np.zeros(T, bool),
        policy_version=np.full(T, version, np.int64), timestamp=time.time() + np.arange(T) * 0.1,
        success=np.zeros(T, bool), logp=np.zeros(T, np.float32), trace=np.zeros((T, 0), np.float32),
        images={n: rng.integers(0, 255, (T, h, w, 3), dtype=np.uint8) for n, h, w in cameras})


def stored_keys(root: Path) -> list[tuple[str, str, int]]:
    """(robot_id, episode_id, chunk_index) of every chunk in the learner's index."""
    db = sqlite3.connect(root / "index.sqlite")
    try:
        return db.execute("SELECT robot_id, episode_id, chunk_index FROM chunks").fetchall()
    finally:
        db.close()


def write_tokens(path: Path, robots: list[str]) -> dict[str, str]:
    tokens = {r: f"token-{r}-secret" for r in robots}
    path.write_text(json.dumps(tokens))
    return tokens


def wait_until(pred, timeout: float = 60.0, every: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")



class SeededEnv(gym.Env):
    """A tiny seedable env for robot-loop tests: obs (3,) drawn from the reset seed, obs' = 0.8 obs + 0.2 [a, 0],
    reward -|obs'|_1, truncated after ``max_steps``; the same seed and actions give the same episode."""

    metadata: ClassVar[dict] = {"render_modes": [], "render_fps": 30}

    def __init__(self, max_steps: int = 10):
        self.observation_space = gym.spaces.Box(-10.0, 10.0, (3,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.max_steps, self._t, self._obs = max_steps, 0, np.zeros(3, np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t, self._obs = 0, self.np_random.normal(size=3).astype(np.float32)
        return self._obs.copy(), {}

    def step(self, action):
        a = np.clip(np.asarray(action, np.float32), -1.0, 1.0)
        self._obs = (0.8 * self._obs + 0.2 * np.concatenate([a, [0.0]])).astype(np.float32)
        self._t += 1
        return self._obs.copy(), float(-np.abs(self._obs).sum()), False, self._t >= self.max_steps, {}


SEEDED_ENV_ID = "fleet_test/Seeded-v0"


def register_seeded_env() -> None:
    if SEEDED_ENV_ID not in gym.registry:
        gym.register(SEEDED_ENV_ID, entry_point="fleet_helpers:SeededEnv")
