"""Isaac Lab (3.x) batched torch envs behind robopolicy's ``BatchedEnv``, in a venv of their own (``make test-isaaclab``).

    env = make_isaaclab_env("Isaac-Cartpole-Direct", num_envs=64, device="cuda:0", overrides=["physics=newton_mjwarp"])
    obs = env.reset(seed=0)                   # {"observation.state": (B, D), "observation.privileged": (B, P)?}
    res = env.step(actions)                   # actions (B, H, A) -> StepResult, tensors on the env's device

Isaac Lab's ``DirectRLEnv`` / ``ManagerBasedRLEnv`` are already batched and in torch; the adapter maps
    obs["policy"]      -> observation.state       obs["critic"] (asymmetric actor-critic) -> observation.privileged
    reward (B,)        -> reward, summed over the H steps of a chunk while the episode runs
    terminated (B,)    -> terminated               truncated / time_outs (B,) -> truncated
    extras             -> StepResult.info["extras"] (Isaac Lab's "log" dict and friends, of the last step)
Isaac Lab resets finished envs inside ``step`` and does not return their last observation, so ``final_obs`` is
the observation after the reset (what rsl_rl bootstraps from too); and with a chunk (H > 1) the actions left in
the chunk after an episode ends run in the next episode (the env cannot pause one env of the batch); their
rewards are not in this step's reward (``chunk_steps`` says where the episode ended) but count in the next
episode's ``EpisodeStats``.

Isaac Lab needs Python 3.12; whether a task can be built depends on its assets (docs/envs.md has what we found).
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any, Self

import torch
from torch import Tensor

from envs.chunk import check_execute
from envs.isaaclab_assets import check_local_asset, local_scene
from robopolicy.types import OBS_PRIVILEGED, OBS_STATE, EpisodeStats, Obs, StepResult


def isaaclab_available() -> bool:
    """Whether ``isaaclab`` and ``isaaclab_tasks`` import here."""
    try:
        import isaaclab  # noqa: F401
        import isaaclab_tasks  # noqa: F401
    except Exception:  # noqa: BLE001  (a broken install raises anything from ImportError to OSError)
        return False
    return True


def _require_isaaclab() -> None:
    if not isaaclab_available():
        raise ImportError("isaaclab is not installed: it needs a venv of its own (Isaac Lab 3 pins mujoco ~3.12, "
                          "Meta-World 3.3.0); make test-isaaclab builds .venv-isaaclab (docs/envs.md)")


def _box_dim(space: Any, name: str) -> int:
    shape = getattr(space, "shape", None)
    if not shape:
        raise ValueError(f"isaaclab: {name} must be a Box with a shape, got {space}")
    return int(shape[-1])


class IsaacLabEnv:
    """An Isaac Lab RL env (``DirectRLEnv`` or ``ManagerBasedRLEnv``, possibly gym-wrapped) as a ``BatchedEnv``.

    Attributes: num_envs (B), state_dim (D), action_dim (A), chunk (H), execute (n), action_low / action_high (A,), device.
    """

    def __init__(self, env: Any, chunk: int = 1, seed: int = 0, env_id: str = "", closer: ExitStack | None = None,
                 execute: int | None = None) -> None:
        if int(chunk) < 1:
            raise ValueError(f"env.chunk must be >= 1, got {chunk}")
        self.execute = check_execute(execute, int(chunk))
        self._env = env
        self._u = getattr(env, "unwrapped", env)
        self._closer = closer
        self.env_id = env_id
        self.chunk = int(chunk)
        self.seed = seed
        self.num_envs = int(self._u.num_envs)
        self.device = torch.device(str(self._u.device))
        # Isaac Lab sets single_* spaces on the unwrapped env (observation: Dict with "policy", maybe "critic").
        obs_space = self._u.single_observation_space
        spaces = getattr(obs_space, "spaces", {"policy": obs_space})
        if "policy" not in spaces:
            raise ValueError(f"{env_id}: Isaac Lab observation space needs a 'policy' group, got {list(spaces)}")
        self.state_dim = _box_dim(spaces["policy"], "observation_space['policy']")
        self.privileged_dim = _box_dim(spaces["critic"], "observation_space['critic']") if "critic" in spaces else 0
        act = self._u.single_action_space
        self.action_dim = _box_dim(act, "action_space")
        low = torch.as_tensor(getattr(act, "low", -float("inf")), dtype=torch.float32).expand(self.action_dim)
        high = torch.as_tensor(getattr(act, "high", float("inf")), dtype=torch.float32).expand(self.action_dim)
        self.action_low, self.action_high = low.clone(), high.clone()
        self._first_reset = True
        self._needs_reset = True
        self._ret = torch.zeros(self.num_envs, dtype=torch.float64, device=self.device)
        self._len = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)

    def _obs(self, obs: dict[str, Tensor] | Tensor) -> Obs:
        if isinstance(obs, Tensor):
            return {OBS_STATE: obs.float()}
        out = {OBS_STATE: obs["policy"].float()}
        if "critic" in obs:
            out[OBS_PRIVILEGED] = obs["critic"].float()
        return out

    def reset(self, seed: int | None = None) -> Obs:
        """Reset every env; the first reset without a seed uses ``self.seed``. Returns (B, ...) tensors."""
        if seed is None and self._first_reset:
            seed = self.seed
        obs, _ = self._env.reset(seed=seed)
        self._first_reset = self._needs_reset = False
        self._ret.zero_()
        self._len.zero_()
        return self._obs(obs)

    def step(self, actions: Tensor) -> StepResult:
        """actions (B, H, A) -> StepResult; see the module docstring for what a chunk does at an episode end."""
        if self._needs_reset:
            raise RuntimeError("IsaacLabEnv.step called before reset()")
        actions = torch.as_tensor(actions, dtype=torch.float32, device=self.device)
        if actions.shape != (self.num_envs, self.chunk, self.action_dim):
            raise ValueError(f"{self.env_id}: actions must have shape (B, H, A) = "
                             f"{(self.num_envs, self.chunk, self.action_dim)}, got {tuple(actions.shape)}")
        B = self.num_envs
        reward = torch.zeros(B, device=self.device)
        terminated = torch.zeros(B, dtype=torch.bool, device=self.device)
        truncated = torch.zeros(B, dtype=torch.bool, device=self.device)
        steps = torch.zeros(B, dtype=torch.int64, device=self.device)
        extras: dict[str, Any] = {}
        # Steps run after an episode ended within the chunk belong to the next episode: counted in its stats.
        carry_ret = torch.zeros(B, dtype=torch.float64, device=self.device)
        carry_len = torch.zeros(B, dtype=torch.int64, device=self.device)
        for h in range(self.execute):  # the first n of the chunk's H actions
            obs, r, te, tr, extras = self._env.step(actions[:, h])
            running = ~(terminated | truncated)  # envs whose episode had not ended earlier in this chunk
            reward += torch.where(running, r.float(), 0.0)
            steps += running.long()
            carry_ret += torch.where(running, 0.0, r.double())
            carry_len += (~running).long()
            terminated |= running & te.bool()
            truncated |= running & tr.bool() & ~te.bool()
        self._ret += reward.double()
        self._len += steps
        episodes = []
        for i in torch.nonzero(terminated | truncated).flatten().tolist():
            episodes.append(EpisodeStats(ret=float(self._ret[i]), length=int(self._len[i]), success=None, env_index=i))
        ended = terminated | truncated
        self._ret = torch.where(ended, carry_ret, self._ret)
        self._len = torch.where(ended, carry_len, self._len)
        o = self._obs(obs)
        return StepResult(obs=o, reward=reward, terminated=terminated, truncated=truncated, final_obs=o,
                          chunk_steps=steps, episodes=episodes, info={"extras": extras})

    def close(self) -> None:
        self._env.close()
        if self._closer is not None:
            self._closer.close()
            self._closer = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def edit_scene(scene_cfg: Any, edits: dict[str, Any], env_id: str = "") -> None:
    """Set ``scene_cfg.<dotted path> = value`` for each edit; a path the scene does not have raises, naming it."""
    for key, value in edits.items():
        names = key.split(".")
        node = scene_cfg
        for i, name in enumerate(names):
            if not hasattr(node, name):
                raise ValueError(f"isaaclab: the scene of {env_id or 'the task'} has no {'.'.join(names[:i + 1])!r} "
                                 f"(edit {key!r})")
            if i < len(names) - 1:
                node = getattr(node, name)
        setattr(node, names[-1], value)


def make_isaaclab_env(
    id: str,
    num_envs: int = 1,
    chunk: int = 1,
    seed: int = 0,
    device: str = "cuda:0",
    overrides: list[str] | None = None,
    headless: bool = True,
    execute: int | None = None,
    scene: dict[str, Any] | None = None,
) -> IsaacLabEnv:
    """Build Isaac Lab task ``id`` (e.g. "Isaac-Cartpole-Direct") with ``num_envs`` envs on ``device``.

    overrides: Isaac Lab's Hydra-style config overrides, e.g. ["physics=newton_mjwarp"] (Newton, no Isaac Sim).
    scene: edits of the task's scene config by dotted path, applied after the overrides, e.g.
    ``{"cartpole.spawn.usd_path": "/tmp/cartpole.usda", "ground": None}`` (``envs.isaaclab_assets.cartpole_scene``:
    a task with assets authored here instead of NVIDIA's server).
    The simulation runtime Isaac Lab needs for the config (none for kitless Newton) is started here and stopped
    by ``close()``.
    """
    _require_isaaclab()
    import gymnasium as gym
    import isaaclab_tasks  # noqa: F401  (registers the Isaac-* ids)
    from isaaclab.app.sim_launcher import launch_simulation
    from isaaclab_tasks.utils import parse_env_cfg

    cfg = parse_env_cfg(id, device=device, num_envs=int(num_envs), overrides=list(overrides or ()))
    edit_scene(cfg.scene, scene or {}, id)
    cfg.seed = seed
    stack = ExitStack()
    try:
        stack.enter_context(launch_simulation(cfg, {"headless": headless, "device": device}))
        env = gym.make(id, cfg=cfg)
    except BaseException:
        stack.close()
        raise
    return IsaacLabEnv(env, chunk=chunk, seed=seed, env_id=id, closer=stack, execute=execute)


def make_isaaclab_vec_env(
    id: str,
    num_envs: int = 1,
    vectorization: str = "sync",
    chunk: int = 1,
    max_episode_steps: int | None = None,
    kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    render_mode: str | None = None,
    execute: int | None = None,
) -> IsaacLabEnv:
    """The ``_target_`` of ``configs/env/isaaclab_*.yaml``: robopolicy's env schema (``EnvConfig``) onto
    ``make_isaaclab_env``. ``kwargs``: ``device`` (default cpu), ``overrides`` (Isaac Lab's, e.g.
    ["physics=newton_mjwarp"]) and ``local_asset`` (true: the task's asset authored here, envs/isaaclab_assets.py).
    Isaac Lab batches, times and renders its envs itself, so ``vectorization`` must be sync and ``max_episode_steps``
    and ``render_mode`` unset."""
    if vectorization != "sync" or max_episode_steps is not None or render_mode is not None:
        raise ValueError(f"{id}: Isaac Lab batches, times and renders its own envs: env.vectorization must be sync and "
                         f"env.max_episode_steps / env.render_mode null, got {vectorization!r}, {max_episode_steps}, "
                         f"{render_mode!r} (the episode length is the task's episode_length_s)")
    opts = dict(kwargs or {})
    unknown = set(opts) - {"device", "overrides", "local_asset"}
    if unknown:
        raise ValueError(f"{id}: unknown env.kwargs {sorted(unknown)}; an Isaac Lab env takes device, overrides, "
                         "local_asset")
    scene = None
    if opts.get("local_asset"):
        check_local_asset(id)
        _require_isaaclab()  # before the asset is authored: pxr comes with Isaac Lab
        scene = local_scene(id)
    return make_isaaclab_env(id, num_envs=num_envs, chunk=chunk, seed=seed, device=str(opts.get("device", "cpu")),
                             overrides=list(opts.get("overrides") or ()), execute=execute, scene=scene)
