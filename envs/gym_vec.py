"""Gymnasium vector envs (MuJoCo and any 1-D ``Box`` env) behind robopolicy's ``BatchedEnv``.

``make_gym_vec_env`` is the Hydra ``_target_`` of ``configs/env/*.yaml``; its keyword arguments
are the fields of robopolicy's ``EnvConfig``. It returns a ``TorchVecEnv`` (envs/torch_vec_env.py:
the batched torch interface, SAME_STEP auto-reset and the sync fast path).
"""
from __future__ import annotations

import difflib
import importlib
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv
from omegaconf import DictConfig, OmegaConf

from envs.chunk import ActionChunk, check_execute
from envs.torch_vec_env import TorchVecEnv

__all__ = ["TorchVecEnv", "make_gym_vec_env"]  # TorchVecEnv re-exported: it used to live here

# The only info keys the adapter reads; async workers drop the rest before pickling them.
_INFO_KEYS = ("success", "chunk_steps")


class _KeepInfo(gym.Wrapper):
    """Keep only ``_INFO_KEYS`` in info. Async workers pickle every info key and the parent batches
    each one (``_add_info``); MuJoCo's six reward-term keys cost ~12% of async Hopper throughput."""

    def reset(self, **kwargs: Any):
        obs, _ = self.env.reset(**kwargs)
        return obs, {}

    def step(self, action: np.ndarray):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {k: info[k] for k in _INFO_KEYS if k in info}


def _make_one(
    env_id: str,
    chunk: int,
    execute: int | None,
    wrap_chunk: bool,
    keep_info: bool,
    max_episode_steps: int | None,
    kwargs: dict[str, Any],
    render_mode: str | None,
) -> gym.Env:
    """Build one sub-env. Module-level (not a lambda) so async workers can unpickle it."""
    if render_mode is not None:  # gym.make forwards render_mode=None too, which envs without rendering reject
        kwargs = {**kwargs, "render_mode": render_mode}
    env = gym.make(env_id, max_episode_steps=max_episode_steps, **kwargs)
    if wrap_chunk:
        # Outside gym.make's TimeLimit, so a time limit inside a chunk ends the chunk.
        env = ActionChunk(env, chunk, execute)
    if keep_info:
        env = _KeepInfo(env)
    return env


def _check_env_id(env_id: str) -> None:
    """Raise a ValueError naming ``env_id`` and the closest registered ids if it is unknown."""
    name = env_id
    if ":" in env_id:  # gymnasium's "module:EnvName-v0" form registers the id on import
        module, name = env_id.split(":", 1)
        importlib.import_module(module)
    try:
        gym.spec(name)
    except gym.error.Error as e:
        close = difflib.get_close_matches(name, list(gym.registry), n=5, cutoff=0.5)
        hint = f"close ids: {', '.join(close)}" if close else "no close id is registered"
        raise ValueError(f"env.id: unknown gymnasium env id {env_id!r} ({hint})") from e


def make_gym_vec_env(
    id: str,
    num_envs: int = 1,
    vectorization: str = "sync",
    chunk: int = 1,
    max_episode_steps: int | None = None,
    kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    render_mode: str | None = None,
    execute: int | None = None,
) -> TorchVecEnv:
    """Build ``num_envs`` copies of gymnasium env ``id`` as a ``TorchVecEnv``.

    id:                gymnasium id, e.g. "Hopper-v5" (``import envs`` registers robopolicy/* ids).
    num_envs:          B, parallel envs.
    vectorization:     "sync" (one process; best for cheap envs and B=1) or "async" (one process per env).
    chunk:             H, env steps per policy step; actions are (B, H, A).
    max_episode_steps: time limit in env steps (not policy steps); None keeps the registered one.
    kwargs:            passed to ``gym.make``.
    seed:              seed of the first ``reset()``; env i gets seed + i.
    render_mode:       None or "rgb_array" (enables ``render()``).
    execute:           env steps per policy step, the first n of each chunk's H actions; None: all H.
    """
    if isinstance(kwargs, DictConfig):  # Hydra hands nested nodes over as DictConfig
        kwargs = OmegaConf.to_container(kwargs, resolve=True)
    kwargs = dict(kwargs or {})
    num_envs, chunk = int(num_envs), int(chunk)
    if num_envs < 1:
        raise ValueError(f"env.num_envs must be >= 1, got {num_envs}")
    if vectorization not in ("sync", "async"):
        raise ValueError(f"env.vectorization must be 'sync' or 'async', got {vectorization!r}")
    if chunk < 1:
        raise ValueError(f"env.chunk must be >= 1, got {chunk}")
    execute = check_execute(execute, chunk)
    if max_episode_steps is not None and int(max_episode_steps) < 1:
        raise ValueError(f"env.max_episode_steps must be None or >= 1, got {max_episode_steps}")
    if render_mode not in (None, "rgb_array"):
        raise ValueError(f"env.render_mode must be null or 'rgb_array', got {render_mode!r}")
    for key in ("max_episode_steps", "render_mode"):
        if key in kwargs:
            raise ValueError(f"env.kwargs.{key}: set env.{key} instead")
    _check_env_id(id)

    is_async = vectorization == "async"
    # Sync with H = 1 skips the ActionChunk wrapper (one Python call less per step); async always
    # wraps it so the batched action space is (B, H, A) and chunk_steps travels back in info.
    env_fn = partial(_make_one, id, chunk, execute, is_async or chunk > 1, is_async, max_episode_steps, kwargs, render_mode)
    fns = [env_fn] * num_envs
    if is_async:
        # Workers that render (cameras, render_mode) start from a fresh forkserver process: a worker forked after
        # the parent created an EGL context hangs in its first render.
        renders = render_mode is not None or bool(kwargs.get("cameras"))
        vec: VectorEnv = AsyncVectorEnv(fns, copy=False, autoreset_mode=AutoresetMode.SAME_STEP,
                                        context="forkserver" if renders else None)
    else:
        vec = SyncVectorEnv(fns, copy=False, autoreset_mode=AutoresetMode.SAME_STEP)
    try:
        return TorchVecEnv(vec, chunk=chunk, seed=seed, env_id=id, execute=execute)
    except Exception:
        vec.close()
        raise
