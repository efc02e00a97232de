"""Shared pieces of the fleet tests: synthetic episodes, specs, a seedable env, chunked policies, a learner with
robot threads."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import ClassVar

import gymnasium as gym
import numpy as np
import torch

from fleet.codec import EpisodePiece
from fleet.config import FleetTrainConfig, LearnerConfig, RobotConfig
from fleet.proto import fleet_pb2 as pb
from robopolicy.encoders import EncoderConfig
from robopolicy.policy import Policy, PolicyConfig

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


H = 4  # action chunk of the chunked test policies


def chunked_policy(head: str = "diffusion", seed: int = 0) -> Policy:
    torch.manual_seed(seed)
    options = {"diffusion": {"num_inference_steps": 4, "num_train_timesteps": 20, "hidden_sizes": [32, 32]},
               "flow": {"num_steps": 3, "hidden_sizes": [32, 32]},
               "tokens": {"num_bins": 16, "d_model": 16, "num_layers": 1, "num_heads": 2},
               "gaussian": {"log_std_init": -0.5}}[head]
    return Policy(PolicyConfig(head=head, head_options=options, encoder=EncoderConfig(hidden_sizes=[32]),
                               state_dim=3, action_dim=A, chunk=H, action_low=[-1.0] * A, action_high=[1.0] * A))


def run_fleet(tmp_path, certs, tokens, algo: str, options: dict, robots: int, lanes: int, updates: int = 2):
    """An in-process learner training ``algo`` on a chunked diffusion policy, ``robots`` robot threads built like
    ``robopolicy fleet robot`` on the seeded test env; returns the stopped learner after ``updates`` updates, with
    ``episodes``, every episode it received."""
    from fleet.run_learner import start_learner
    from fleet.run_robot import build_robot

    register_seeded_env()
    chunked_policy().save_pretrained(tmp_path / "init")
    cfg = LearnerConfig(root=str(tmp_path / "store"), port=0, cert=str(certs["cert"]), key=str(certs["key"]),
                        tokens_file=str(certs["tokens"]), shard_seconds=0.5,
                        train=FleetTrainConfig(algo=algo, init_policy=str(tmp_path / "init"), n_steps=3, lanes=lanes,
                                               updates=updates, algo_options=options))
    proc = start_learner(cfg)
    proc.episodes = []  # every episode the trainer was fed
    feed_put = proc.store.on_episode
    proc.store.on_episode = lambda ep: (proc.episodes.append(ep), feed_put(ep))
    loops = []
    try:
        for i in range(robots):
            rid = f"robot-{i}"
            loop, client = build_robot(RobotConfig(
                robot_id=rid, learner=f"localhost:{proc.port}", token=tokens[rid], ca=str(certs["ca"]),
                spool=str(tmp_path / f"spool-{i}"), env_id=SEEDED_ENV_ID, env_kwargs={}, max_episode_steps=10,
                seed=1000 * i))
            client.start()
            loops.append((loop, client, threading.Thread(target=loop.run, daemon=True)))
        for _, _, t in loops:
            t.start()
        wait_until(lambda: proc.trainer.updates == updates, 180, what=f"{algo}: {updates} updates")
    finally:
        for loop, client, t in loops:
            loop.stop()
            t.join(timeout=30)
            loop.worker.close()
            client.stop()
        proc.stop()
    return proc
