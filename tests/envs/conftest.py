"""Shared helpers for the envs tests: random action chunks within bounds, trajectory rollouts.

They are handed out as fixtures: tests/envs has no __init__.py (a package named ``envs`` here would
shadow the real one), so test modules cannot import from this file.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import envs  # registers robopolicy/* toy ids
from robopolicy.types import EpisodeStats


def _random_chunks(env: envs.TorchVecEnv, steps: int, seed: int = 0) -> torch.Tensor:
    """(T, B, H, A) float32 actions uniform in the env's bounds, pre-generated so runs can replay them."""
    rng = np.random.default_rng(seed)
    low, high = env.action_low.numpy(), env.action_high.numpy()
    a = rng.uniform(low, high, size=(steps, env.num_envs, env.chunk, env.action_dim))
    return torch.from_numpy(a.astype(np.float32))


def _rollout(
    env: envs.TorchVecEnv, actions: torch.Tensor, seed: int
) -> tuple[dict[str, torch.Tensor], list[dict[int, EpisodeStats]]]:
    """Reset with ``seed`` and replay ``actions`` (T, B, H, A).

    Returns the time-major outputs ({"obs": (T+1, B, D), "reward" / "terminated" / "truncated" /
    "steps": (T, B), "final_obs": (T, B, D)}) and, per step, {env index: EpisodeStats} of the
    episodes that ended there.
    """
    obs = [env.reset(seed=seed)["observation.state"]]
    cols: dict[str, list[torch.Tensor]] = {k: [] for k in ("reward", "terminated", "truncated", "final_obs", "steps")}
    episodes = []
    for a in actions:
        res = env.step(a)
        obs.append(res.obs["observation.state"])
        cols["reward"].append(res.reward)
        cols["terminated"].append(res.terminated)
        cols["truncated"].append(res.truncated)
        cols["final_obs"].append(res.final_obs["observation.state"])
        cols["steps"].append(res.chunk_steps)
        ended = torch.nonzero(res.terminated | res.truncated).flatten().tolist()
        assert len(res.episodes) == len(ended), "one EpisodeStats per finished episode"
        assert [e.env_index for e in res.episodes] == ended, "episodes carry their env index, in env order"
        episodes.append(dict(zip(ended, res.episodes, strict=True)))  # reported in env order
    return {"obs": torch.stack(obs), **{k: torch.stack(v) for k, v in cols.items()}}, episodes


@pytest.fixture
def make_env():
    """``make_env(**kwargs)`` -> TorchVecEnv, closed at teardown (async workers are processes)."""
    made: list[envs.TorchVecEnv] = []

    def make(**kwargs) -> envs.TorchVecEnv:
        made.append(envs.make_gym_vec_env(**kwargs))
        return made[-1]

    yield make
    for e in made:
        e.close()


@pytest.fixture
def random_chunks():
    return _random_chunks


@pytest.fixture
def rollout():
    return _rollout
