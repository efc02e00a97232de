"""``TorchVecEnv``: a gymnasium ``VectorEnv`` as robopolicy's ``BatchedEnv``, in torch (built by
``envs.gym_vec.make_gym_vec_env``).

    reset(seed)              -> {"observation.state": (B, D) float32}
    step(actions (B, H, A))  -> StepResult: obs (B, D), reward (B,) float32, terminated (B,) bool,
                                truncated (B,) bool, final_obs (B, D), chunk_steps (B,) int64, episodes

Auto-reset follows gymnasium's SAME_STEP mode: where an episode ended, ``obs`` is already the
first obs of the next episode and ``final_obs`` the last obs of the finished one (what GAE
bootstraps from at a truncation).

Speed: the sync path is on the hot path of single-env PPO, so it steps the sub-envs of the
``SyncVectorEnv`` itself instead of calling ``SyncVectorEnv.step``; that skips gymnasium's
per-key info batching (``_add_info``), action ``iterate`` and obs ``concatenate`` (~40 us per
call, ~30% of a Hopper step on a 2-core box) and leaves room for the torch conversion. The
semantics are those of SAME_STEP (a test checks sync == async step for step).
"""

from __future__ import annotations

import os
from typing import Any, Self

import gymnasium as gym
import numpy as np
import torch
from gymnasium.spaces import Box
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv
from torch import Tensor

from envs.chunk import check_execute, chunk_space
from robopolicy.types import OBS_STATE, EpisodeStats, Obs, StepResult


class TorchVecEnv:
    """A gymnasium ``VectorEnv`` (SAME_STEP auto-reset) as robopolicy's ``BatchedEnv``, in torch.

    Tensors are on the CPU and freshly allocated each step, except that where no env finished,
    ``final_obs`` holds the same tensors as ``obs`` (read-only use, as with any step output).
    ``reset(seed=None)`` the first time seeds with ``seed`` (the config's), later continues the RNGs.

    Attributes:
        num_envs (B), state_dim (D), action_dim (A), chunk (H), execute (n <= H env steps per policy step);
        action_low / action_high: (A,) float32 bounds of one action in env units;
        single_action_space: Box (H, A), what one env consumes per policy step;
        render_mode; render_fps: frame rate of one ``render()`` per policy step (env rate / n).
    """

    def __init__(self, vec: VectorEnv, chunk: int = 1, seed: int = 0, env_id: str = "", execute: int | None = None) -> None:
        obs_space = vec.single_observation_space
        act_space = vec.single_action_space
        name = env_id or str(vec)
        # A 1-D Box is observation.state; a Dict holds LeRobot keys (observation.state (D,), observation.privileged
        # (P,), observation.images.<cam> (3, h, w) uint8, task: a Text space) and is batched key by key; a Text
        # key becomes a list of B strings.
        self._keys: dict[str, tuple[tuple[int, ...], np.dtype]] | None = None
        self._text_keys: set[str] = set()
        if isinstance(obs_space, gym.spaces.Dict):
            if OBS_STATE not in obs_space.spaces or len(obs_space[OBS_STATE].shape) != 1:
                raise ValueError(f"{name}: a Dict observation space needs a 1-D Box {OBS_STATE!r}, got {obs_space}")
            self._keys = {k: (sp.shape, sp.dtype) for k, sp in obs_space.spaces.items()}
            self._text_keys = {k for k, sp in obs_space.spaces.items() if isinstance(sp, gym.spaces.Text)}
            obs_space = obs_space[OBS_STATE]
        if not isinstance(obs_space, Box) or len(obs_space.shape) != 1:
            raise ValueError(f"{name}: TorchVecEnv needs a 1-D Box observation space (D,), got {obs_space}")
        if not isinstance(act_space, Box) or len(act_space.shape) not in (1, 2):
            raise ValueError(f"{name}: TorchVecEnv needs a Box action space (A,) or (H, A), got {act_space}")
        # Sub-envs either take one action (A,) (then H must be 1) or are ActionChunk-wrapped (H, A).
        self._chunked = len(act_space.shape) == 2
        if self._chunked and act_space.shape[0] != chunk:
            raise ValueError(f"{name}: sub-env action chunk is {act_space.shape[0]}, but chunk={chunk}")
        if not self._chunked and chunk != 1:
            raise ValueError(f"{name}: chunk={chunk} needs ActionChunk-wrapped sub-envs, got {act_space}")
        if not isinstance(vec, SyncVectorEnv) and vec.metadata.get("autoreset_mode") != AutoresetMode.SAME_STEP:
            raise ValueError(f"{name}: the vector env must use autoreset_mode=AutoresetMode.SAME_STEP")

        self._vec = vec
        self._sync_envs = vec.envs if isinstance(vec, SyncVectorEnv) else None
        self.env_id = env_id
        self.num_envs = int(vec.num_envs)
        self.state_dim = int(obs_space.shape[0])
        # Shape of every observation key (B excluded), for consumers such as an asymmetric critic.
        self.obs_shapes = {k: tuple(shape or ()) for k, (shape, _) in self._keys.items()} if self._keys else {
            OBS_STATE: (self.state_dim,)}
        self.action_dim = int(act_space.shape[-1])
        self.chunk = int(chunk)
        self.execute = check_execute(execute, self.chunk)
        low = act_space.low[0] if self._chunked else act_space.low
        high = act_space.high[0] if self._chunked else act_space.high
        self.action_low = torch.as_tensor(low, dtype=torch.float32)
        self.action_high = torch.as_tensor(high, dtype=torch.float32)
        self.single_action_space = act_space if self._chunked else chunk_space(act_space, self.chunk)
        self.render_mode = vec.render_mode
        # One frame per policy step (n env steps), so a video plays in real time at the env's rate / n.
        fps = vec.metadata.get("render_fps")
        self.render_fps = None if fps is None else max(1, round(fps / self.execute))
        self.seed = seed
        self._act_dtype = act_space.dtype
        self._batch_action_shape = (self.num_envs, self.chunk, self.action_dim)
        self._needs_reset = True
        self._first_reset = True
        self._closed = False
        # Running episode statistics per env. Python lists, not numpy: the sync path updates them
        # one env at a time, where a list element costs ~30 ns and a numpy scalar ~150 ns.
        self._ret = [0.0] * self.num_envs
        self._len = [0] * self.num_envs
        self._succ: list[bool | None] = [None] * self.num_envs

    # ------------------------------------------------------------------ BatchedEnv
    def reset(self, seed: int | list[int] | None = None) -> Obs:
        """Reset all envs; env i is seeded with seed + i, or with seed[i] for a list (B,) of seeds (equal
        seeds give equal initial states: GRPO groups). The first reset without a seed uses ``self.seed``.

        Returns {"observation.state": (B, D) float32} (and the env's other keys if it observes a Dict).
        """
        if seed is None and self._first_reset:
            seed = self.seed
        if isinstance(seed, list | tuple) and len(seed) != self.num_envs:
            raise ValueError(f"reset: {len(seed)} seeds for {self.num_envs} envs")
        obs, _ = self._vec.reset(seed=list(seed) if isinstance(seed, list | tuple) else seed)
        self._first_reset = False
        self._needs_reset = False
        self._ret = [0.0] * self.num_envs
        self._len = [0] * self.num_envs
        self._succ = [None] * self.num_envs
        # np.array copies: with copy=False the vector env reuses its obs buffer.
        if self._keys is not None:
            return self._to_torch({k: list(obs[k]) if k in self._text_keys else obs[k] for k in self._keys}, copy=True)
        return {OBS_STATE: torch.from_numpy(np.array(obs, dtype=np.float32))}

    def step(self, actions: Tensor | np.ndarray) -> StepResult:
        """Run one policy step in every env; finished episodes auto-reset (SAME_STEP).

        actions: (B, H, A) float tensor (or array) in env units; not clipped here (the policy bounds
            its actions; MuJoCo clamps ctrl to ctrlrange but the control cost sees the raw value).
        Returns StepResult with obs / final_obs {"observation.state": (B, D) float32}, reward (B,)
        float32 summed over the executed steps, terminated / truncated (B,) bool, chunk_steps (B,)
        int64 and ``episodes``: one EpisodeStats per env whose episode ended, in env order (ret is
        the undiscounted return, length counts env steps). Outputs are new tensors each step, but
        ``final_obs`` is ``obs``'s very tensor when no env finished: treat both as read-only.
        """
        if self._needs_reset:
            raise RuntimeError("TorchVecEnv.step called before reset()")
        a = self._actions_np(actions)
        if self._sync_envs is not None:
            return self._step_sync(a)
        return self._step_vec(a)

    def render(self) -> np.ndarray:
        """The first env's frame (h, w, 3) uint8; needs render_mode="rgb_array"."""
        if self.render_mode != "rgb_array":
            raise ValueError(f"render() needs env.render_mode='rgb_array', this env has {self.render_mode!r}")
        try:
            if self._sync_envs is not None:
                return self._sync_envs[0].render()
            # AsyncVectorEnv can only call a method on every worker: correct, B times the cost.
            return self._vec.call("render")[0]
        except Exception as e:  # MuJoCo's GL failures surface as bare TypeError / AttributeError / FatalError
            raise RuntimeError(
                f"{self.env_id}: render() failed ({type(e).__name__}: {e}). For MuJoCo envs this usually means no "
                f"OpenGL backend: MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}; use 'egl' on a GPU machine or 'osmesa' "
                "(apt install libosmesa6) on a CPU one."
            ) from e

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call method ``name`` of every sub-env (e.g. ``set_randomization_scale``); returns their results."""
        return self._vec.call(name, *args, **kwargs)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._vec.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "sync" if self._sync_envs is not None else "async"
        return (
            f"TorchVecEnv({self.env_id!r}, num_envs={self.num_envs}, {kind}, chunk={self.chunk}, "
            f"state_dim={self.state_dim}, action_dim={self.action_dim})"
        )

    # ------------------------------------------------------------------ internals
    def _actions_np(self, actions: Tensor | np.ndarray) -> np.ndarray:
        """(B, H, A) tensor or array -> numpy in the env's action dtype, without a copy when possible."""
        if isinstance(actions, Tensor):
            try:
                # Zero-copy for a CPU float tensor without grad: one torch call, the common case.
                a = actions.numpy()
            except (RuntimeError, TypeError):  # requires grad, on an accelerator, or bf16 (no numpy dtype)
                a = actions.detach().float().cpu().numpy()
        else:
            a = np.asarray(actions)
        if a.shape != self._batch_action_shape:
            raise ValueError(
                f"{self.env_id}: actions must have shape (B, H, A) = {self._batch_action_shape}, got {tuple(a.shape)}"
            )
        if a.dtype != self._act_dtype:
            a = a.astype(self._act_dtype)
        return a

    def _step_sync(self, a: np.ndarray) -> StepResult:
        """SAME_STEP auto-reset over the SyncVectorEnv's sub-envs, one at a time."""
        B = self.num_envs
        if self._keys is not None:
            return self._step_sync_dict(a)
        obs = np.empty((B, self.state_dim), np.float32)
        rew = np.empty(B, np.float32)
        term = np.empty(B, np.bool_)
        trunc = np.empty(B, np.bool_)
        steps = np.ones(B, np.int64)
        finals = []
        episodes = []
        chunked = self._chunked
        for i, env in enumerate(self._sync_envs):
            o, r, te, tr, info = env.step(a[i] if chunked else a[i, 0])
            n = info["chunk_steps"] if chunked else 1
            rew[i] = r
            term[i] = te
            trunc[i] = tr
            steps[i] = n
            self._ret[i] += r
            self._len[i] += n
            if "success" in info:
                self._succ[i] = bool(self._succ[i]) or bool(info["success"])
            if te or tr:
                finals.append((i, o))
                episodes.append(self._end_episode(i))
                o, _ = env.reset()
            obs[i] = o
        obs_t = torch.from_numpy(obs)
        if finals:
            final = obs.copy()
            for i, o in finals:
                final[i] = o
            final_t = torch.from_numpy(final)
        else:
            final_t = obs_t
        return StepResult(
            obs={OBS_STATE: obs_t},
            reward=torch.from_numpy(rew),
            terminated=torch.from_numpy(term),
            truncated=torch.from_numpy(trunc),
            final_obs={OBS_STATE: final_t},
            chunk_steps=torch.from_numpy(steps),
            episodes=episodes,
        )

    def _step_sync_dict(self, a: np.ndarray) -> StepResult:
        """``_step_sync`` for Dict observations: the same loop, one buffer per key."""
        B = self.num_envs
        obs = {k: [None] * B if k in self._text_keys else np.empty((B, *shape), dtype)
               for k, (shape, dtype) in self._keys.items()}
        rew = np.empty(B, np.float32)
        term = np.empty(B, np.bool_)
        trunc = np.empty(B, np.bool_)
        steps = np.ones(B, np.int64)
        finals, episodes = [], []
        for i, env in enumerate(self._sync_envs):
            o, r, te, tr, info = env.step(a[i] if self._chunked else a[i, 0])
            steps[i] = info["chunk_steps"] if self._chunked else 1
            rew[i], term[i], trunc[i] = r, te, tr
            self._ret[i] += r
            self._len[i] += int(steps[i])
            if "success" in info:
                self._succ[i] = bool(self._succ[i]) or bool(info["success"])
            if te or tr:
                finals.append((i, o))
                episodes.append(self._end_episode(i))
                o, _ = env.reset()
            for k, buf in obs.items():
                buf[i] = o[k]
        final = obs
        if finals:
            final = {k: v.copy() for k, v in obs.items()}
            for i, o in finals:
                for k, buf in final.items():
                    buf[i] = o[k]
        obs_t = self._to_torch(obs)
        return StepResult(
            obs=obs_t,
            reward=torch.from_numpy(rew),
            terminated=torch.from_numpy(term),
            truncated=torch.from_numpy(trunc),
            final_obs=obs_t if final is obs else self._to_torch(final),
            chunk_steps=torch.from_numpy(steps),
            episodes=episodes,
        )

    def _step_vec(self, a: np.ndarray) -> StepResult:
        """Any other VectorEnv (async): sub-envs are ActionChunk + gym_vec._KeepInfo wrapped, infos are batched."""
        o, r, te, tr, info = self._vec.step(a)
        if self._keys is not None:  # Dict obs: key by key; info["final_obs"][i] is env i's obs dict
            obs = {k: list(o[k]) if k in self._text_keys else np.array(o[k]) for k in self._keys}
        else:
            obs = np.array(o, dtype=np.float32)
        final = obs
        # SAME_STEP puts the finished episode's step info under info["final_info"]; others at the top.
        fin = info.get("final_info", {})
        steps, _ = _gather(info, fin, "chunk_steps", np.ones(self.num_envs, np.int64))
        succ, has_succ = _gather(info, fin, "success", np.zeros(self.num_envs, np.bool_))
        done = te | tr
        episodes = []
        if done.any() and self._keys is not None:
            final = {k: v.copy() for k, v in obs.items()}
            for i in np.flatnonzero(done):
                for k, buf in final.items():
                    buf[i] = info["final_obs"][i][k]
        elif done.any():
            final = obs.copy()
            for i in np.flatnonzero(done):
                final[i] = info["final_obs"][i]
        for i, (ri, ni) in enumerate(zip(r.tolist(), steps.tolist(), strict=True)):
            self._ret[i] += ri
            self._len[i] += ni
            if has_succ[i]:
                self._succ[i] = bool(self._succ[i]) or bool(succ[i])
            if done[i]:
                episodes.append(self._end_episode(i))
        if self._keys is not None:
            obs_d = self._to_torch(obs)
            final_d = obs_d if final is obs else self._to_torch(final)
        else:
            obs_t = torch.from_numpy(obs)
            obs_d = {OBS_STATE: obs_t}
            final_d = {OBS_STATE: obs_t if final is obs else torch.from_numpy(final)}
        return StepResult(
            obs=obs_d,
            reward=torch.from_numpy(r.astype(np.float32)),
            terminated=torch.from_numpy(np.array(te, dtype=np.bool_)),
            truncated=torch.from_numpy(np.array(tr, dtype=np.bool_)),
            final_obs=final_d,
            chunk_steps=torch.from_numpy(steps),
            episodes=episodes,
        )

    def _to_torch(self, obs: dict[str, Any], copy: bool = False) -> Obs:
        """Dict-of-arrays -> dict of tensors (B, ...); Text keys stay lists of B strings."""
        return {k: list(v) if k in self._text_keys else torch.from_numpy(np.array(v) if copy else v)
                for k, v in obs.items()}

    def _end_episode(self, i: int) -> EpisodeStats:
        stats = EpisodeStats(ret=float(self._ret[i]), length=int(self._len[i]), success=self._succ[i], env_index=i)
        self._ret[i], self._len[i], self._succ[i] = 0.0, 0, None
        return stats


def _gather(
    info: dict[str, Any], final_info: dict[str, Any], key: str, out: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Batched info ``key`` from the top level and from ``final_info`` into ``out`` (B,); also the (B,) mask
    of envs that reported it (gymnasium marks them in ``info["_" + key]``)."""
    seen = np.zeros(out.shape[0], np.bool_)
    for src in (info, final_info):
        if key in src:
            mask = src[f"_{key}"]
            out[mask] = src[key][mask]
            seen |= mask
    return out, seen
