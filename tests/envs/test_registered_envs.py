"""Contract test over EVERY registered robopolicy gymnasium id (toy, arm, Meta-World): gymnasium's check_env,
reset/step shapes inside the spaces, no NaN, the same seed reproduces the first 100 steps, render gives an image.

The default run covers every id except 47 of the 50 per-task Meta-World ids (three represent them: they share
one code path) and MT10 (it builds a Meta-World env per task it meets, ~20 s here; tests/envs/test_metaworld.py
checks it lightly); ``-m slow`` runs all of them.
"""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
import envs.metaworld  # noqa: F401  (registers robopolicy/MetaWorld-* ids)
from envs.metaworld import task_env_id

ALL_IDS = sorted(k for k in gym.registry if k.startswith("robopolicy/"))
KWARGS = {"robopolicy/MetaWorld-v3": {"task": "reach-v3"}}  # the one id whose task comes from kwargs
FAST_METAWORLD = {task_env_id(t) for t in ("reach-v3", "door-open-v3", "peg-insert-side-v3")}
STEPS = 100


def _is_slow(env_id: str) -> bool:
    return env_id.startswith("robopolicy/MetaWorld-") and env_id not in FAST_METAWORLD and env_id != "robopolicy/MetaWorld-v3"


PARAMS = [pytest.param(i, marks=pytest.mark.slow) if _is_slow(i) else i for i in ALL_IDS]


def _make(env_id: str, **kw) -> gym.Env:
    return gym.make(env_id, disable_env_checker=True, **{**KWARGS.get(env_id, {}), **kw})


def _flat(obs) -> dict[str, np.ndarray]:
    """Obs as {key: array}; text keys as an array of one string."""
    if isinstance(obs, dict):
        return {k: np.asarray(v) for k, v in obs.items()}
    return {"observation.state": np.asarray(obs)}


def _run(env: gym.Env, seed: int, steps: int = STEPS) -> list[dict[str, np.ndarray]]:
    """Reset with ``seed`` and take ``steps`` seeded random actions (auto-resetting); every obs, reward and flag."""
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    out = [_flat(obs)]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs), f"{env.spec.id}: obs outside the observation space"
        assert isinstance(reward, (float, np.floating)) and np.isfinite(reward), f"{env.spec.id}: reward {reward}"
        out.append({**_flat(obs), "reward": np.float64(reward), "done": np.array([terminated, truncated])})
        if terminated or truncated:
            obs, _ = env.reset()
            out.append(_flat(obs))
    return out


def test_registry_has_every_family():
    assert {"robopolicy/ConstantReward-v0", "robopolicy/Arm-PickPlace-v0", "robopolicy/MetaWorld-MT10-v3"} <= set(ALL_IDS)
    assert sum(i.startswith("robopolicy/Arm-") for i in ALL_IDS) == 4
    assert len([i for i in ALL_IDS if i.startswith("robopolicy/MetaWorld-")]) == 50 + 2


@pytest.mark.parametrize("env_id", PARAMS)
def test_env_contract(env_id: str):
    env = _make(env_id, render_mode="rgb_array")
    try:
        with warnings.catch_warnings():  # check_env warns about infinite Box bounds and wrapped envs
            warnings.simplefilter("ignore")
            check_env(env, skip_render_check=True)
        first = _run(env, seed=3)
        for t, frame in enumerate(first):
            for k, v in frame.items():
                if v.dtype.kind == "f":
                    assert np.isfinite(v).all(), f"{env_id}: non-finite {k} at step {t}"
        again = _run(env, seed=3)
        assert len(first) == len(again)
        for t, (a, b) in enumerate(zip(first, again, strict=True)):
            for k in a:
                np.testing.assert_array_equal(a[k], b[k], err_msg=f"{env_id}: {k} differs at step {t} with the same seed")
        image = env.render()
        assert isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        assert image.shape[0] >= 16 and image.shape[1] >= 16
    finally:
        env.close()
