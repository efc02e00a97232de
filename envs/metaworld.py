"""Meta-World (v3): every single task (MT1) and MT10 through ``make_gym_vec_env``, and their scripted experts.

Gymnasium ids (registered when this module is imported):
    robopolicy/MetaWorld-v3            one task, ``kwargs.task`` names it (e.g. "reach-v3"); configs/env/metaworld.yaml
    robopolicy/MetaWorld-<task>        one id per task, e.g. robopolicy/MetaWorld-door-open-v3 (all 50)
    robopolicy/MetaWorld-MT10-v3       MT10: a task drawn per episode, named in the ``task`` observation key
In a config the id is written ``envs.metaworld:<id>``: the module prefix makes gymnasium import this file, so
``import envs`` stays free of Meta-World's import cost. ``kwargs.cameras=[corner]`` (any of ``CAMERAS``) adds
``observation.images.<cam>`` (3, S, S) uint8, S = ``kwargs.image_size`` (84), rendered offscreen (MUJOCO_GL=egl).
The single-task envs are Meta-World's ``Meta-World/MT1`` plus one fix: Meta-World's ``reset`` ignores its seed,
so the goal/object configuration MT1 draws at each reset (one of 50, seeded by ``kwargs.task_seed``) did not
follow ``reset(seed)``; ``_SeededTaskReset`` reseeds Meta-World's RNG first, making runs reproducible.

    observation.state  (B, 39) float32: hand xyz, gripper, object 1 pose (7), object 2 pose (7), the same
                       18 values one step earlier, goal xyz
    action             (B, H, 4) in [-1, 1]: hand xyz delta, gripper
    info["success"]    per step; ``EpisodeStats.success`` is True once any step succeeded

Meta-World runs at 80 Hz (frame_skip 5 x 2.5 ms) and its own time limit is 500 steps (``max_path_length``);
our configs use 200, enough for the scripted experts on reach / push / pick-place.
"""

from __future__ import annotations

import string
import warnings
from typing import Any, ClassVar, Protocol

import gymnasium as gym
import metaworld
import metaworld.env_dict
import metaworld.wrappers
import mujoco
import numpy as np
from gymnasium.spaces import Box, Dict, Text

from envs.gym_vec import TorchVecEnv, make_gym_vec_env
from robopolicy.reset_curriculum import FailurePrioritizedSampler

ENV_NAME = "robopolicy/MetaWorld-v3"
ENV_ID = f"envs.metaworld:{ENV_NAME}"
MT10_NAME = "robopolicy/MetaWorld-MT10-v3"
FPS = 80  # 1 / (frame_skip 5 * timestep 0.0025 s); also Meta-World's metadata["render_fps"]
CAMERAS = ("corner", "corner2", "corner3", "corner4", "topview", "behindGripper", "gripperPOV")
FLIPPED_CAMERAS = ("corner",)  # Meta-World's "corner" camera renders upside down (its xyaxes point down); we flip it

# Instructions for the MT10 tasks (and every task we record demos of); the other tasks get their name in words.
_INSTRUCTIONS = {
    "reach-v3": "reach the goal position",
    "push-v3": "push the puck to the goal",
    "pick-place-v3": "pick up the puck and place it at the goal",
    "door-open-v3": "open the door",
    "drawer-open-v3": "open the drawer",
    "drawer-close-v3": "close the drawer",
    "button-press-topdown-v3": "press the button from the top",
    "peg-insert-side-v3": "insert the peg into the hole from the side",
    "window-open-v3": "open the window",
    "window-close-v3": "close the window",
}
_POLICY_NAMES = {"peg-insert-side-v3": "SawyerPegInsertionSideV3Policy"}  # the one irregular class name


def _policy_name(task: str) -> str:
    """reach-v3 -> SawyerReachV3Policy (metaworld.policies' naming)."""
    return _POLICY_NAMES.get(task, "Sawyer" + "".join(w.capitalize() for w in task[:-3].split("-")) + "V3Policy")


# Every Meta-World v3 task -> (scripted expert class in metaworld.policies, instruction of every demo frame)
TASKS: dict[str, tuple[str, str]] = {
    t: (_policy_name(t), _INSTRUCTIONS.get(t, t[:-3].replace("-", " "))) for t in metaworld.ALL_V3_ENVIRONMENTS
}
MT10_TASKS: tuple[str, ...] = tuple(metaworld.env_dict.MT10_V3)


class ScriptedExpert(Protocol):
    def get_action(self, obs: np.ndarray) -> np.ndarray: ...


def task_env_id(task: str) -> str:
    """The gymnasium id of one task: reach-v3 -> robopolicy/MetaWorld-reach-v3."""
    return f"robopolicy/MetaWorld-{task}"


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task: unknown Meta-World task {task!r}; known: {', '.join(sorted(TASKS))}")


def instruction(task: str) -> str:
    """The language instruction of ``task`` (what LeRobot stores in a frame's "task")."""
    _check_task(task)
    return TASKS[task][1]


def scripted_expert(task: str) -> ScriptedExpert:
    """Meta-World's hand-written policy for ``task``: ``get_action(obs (39,)) -> action (4,)`` in numpy."""
    _check_task(task)
    import metaworld.policies

    with warnings.catch_warnings():  # "Constant(s) may be too high": the env clips to [-1, 1], as intended
        warnings.simplefilter("ignore", UserWarning)
        return getattr(metaworld.policies, TASKS[task][0])()


class _SeededTaskReset(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Make ``reset(seed)`` seed Meta-World: its ``reset`` ignores the seed, so reseed its RNG (``env.seed``)
    first; MT1's task draw then comes from the freshly seeded RNG."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.unwrapped.seed(seed)
        return self.env.reset(options=options)


def task_selector(env: gym.Env) -> metaworld.wrappers.RandomTaskSelectWrapper:
    """The MT1 wrapper under ``env`` that holds the 50 configurations and draws one per reset."""
    selector = env
    while not isinstance(selector, metaworld.wrappers.RandomTaskSelectWrapper):
        if not isinstance(selector, gym.Wrapper):
            raise TypeError("reset_curriculum: no Meta-World task selector under this env")
        selector = selector.env
    return selector


class _SuccessBonus(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """reward + bonus on every step that succeeds. Meta-World's dense rewards saturate near the goal (reach: 9.8-9.9
    of 10 at 1 cm outside the 5 cm success radius), so a policy stopping just outside earns almost the full return;
    the bonus makes crossing the success boundary worth something to PPO (docs/finetuning_results.md measures it)."""

    def __init__(self, env: gym.Env, bonus: float) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, bonus=bonus)
        gym.Wrapper.__init__(self, env)
        self.bonus = float(bonus)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, float(reward) + self.bonus * float(info.get("success", 0.0)), terminated, truncated, info


class _ResetCurriculum(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Pick each episode's MT1 configuration (one of 50) with a ``FailurePrioritizedSampler`` instead of Meta-World's
    uniform draw; ``info["reset_config"]`` names it. Wraps ``_SeededTaskReset``, so ``reset(seed)`` stays
    reproducible: the draw comes from the freshly seeded Meta-World RNG."""

    def __init__(self, env: gym.Env, weight: float, scope: str = "env", priority: str = "failure",
                 temperature: float = 1.0) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, weight=weight, scope=scope, priority=priority,
                                                 temperature=temperature)
        gym.Wrapper.__init__(self, env)
        if scope not in ("env", "run"):
            raise ValueError(f"reset_curriculum_scope: 'env' or 'run', got {scope!r}")
        selector = task_selector(env)
        selector.toggle_sample_tasks_on_reset(False)  # we choose the configuration
        self.configs = selector.tasks
        self.sampler = FailurePrioritizedSampler(len(self.configs), weight, priority=priority, temperature=temperature)
        # scope "run": the learner's RunWideCurriculum drains the outcomes and sets the probabilities (uniform until)
        self.scope, self.outcomes, self.pushed = scope, [], None
        self._config, self._steps, self._succeeded = -1, 0, False

    def reset_curriculum_sampler(self) -> FailurePrioritizedSampler:
        """This env's sampler, whose settings a run-wide curriculum takes (scope "run")."""
        return self.sampler

    def drain_reset_outcomes(self) -> list[tuple[int, bool]]:
        """The (configuration, success) of each episode finished since the last call (scope "run")."""
        outcomes, self.outcomes = self.outcomes, []
        return outcomes

    def set_reset_probabilities(self, p: np.ndarray) -> None:
        if self.scope != "run":
            raise ValueError("set_reset_probabilities: this env's curriculum learns from its own episodes "
                             "(reset_curriculum_scope='env')")
        self.pushed = np.asarray(p, dtype=np.float64)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if self._config >= 0 and self._steps > 0:  # the episode that just ended, whatever ended it
            if self.scope == "run":
                self.outcomes.append((self._config, self._succeeded))
            else:
                self.sampler.update(self._config, self._succeeded)
        if seed is not None:
            self.unwrapped.seed(seed)
        rng = self.unwrapped.np_random
        config = self.sampler.draw(rng) if self.pushed is None else int(rng.choice(len(self.configs), p=self.pushed))
        self._config, self._steps, self._succeeded = config, 0, False
        self.unwrapped.set_task(self.configs[self._config])
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, {**info, "reset_config": self._config}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._steps += 1
        self._succeeded |= bool(info.get("success", 0.0))
        return obs, reward, terminated, truncated, info


class _ConfigSweep(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Off until ``sweep_reset_configs(stride)`` is called (``evaluate(all_configs=True)`` does, through the vector
    env's ``call``); from then on MT1's configurations run in order instead of being drawn: a reset seeded with s
    runs configuration s mod 50, and each later reset moves ``stride`` on. B envs seeded s, s+1, ..., s+B-1 with
    ``stride`` B thus run configurations s, s+1, s+2, ... round-robin: every one once per 50 episodes in all."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self.stride, self._position, self.configs = 0, 0, []
        self._curriculum = isinstance(env, _ResetCurriculum)  # it draws the configurations itself

    def sweep_reset_configs(self, stride: int) -> int:
        """Start the sweep at the next seeded reset; returns the number of configurations."""
        if self._curriculum:
            raise ValueError("all_configs: the env draws its configurations with reset_curriculum; drop it to sweep")
        if stride < 1:
            raise ValueError(f"sweep_reset_configs: stride must be positive, got {stride}")
        selector = task_selector(self.env)
        selector.toggle_sample_tasks_on_reset(False)  # we choose the configuration
        self.stride, self.configs = int(stride), selector.tasks
        return len(self.configs)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if not self.stride:
            return self.env.reset(seed=seed, options=options)
        if seed is not None:
            self._position = int(seed)
        config = self._position % len(self.configs)
        self._position += self.stride
        self.unwrapped.set_task(self.configs[config])
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, {**info, "reset_config": config}


class _Float32State(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """float32 observations in an unbounded Box: Meta-World's own bounds are tighter than what it returns
    (its reset obs fails ``observation_space.contains``), so a space checker would reject a correct env."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        self.observation_space = Box(-np.inf, np.inf, env.observation_space.shape, np.float32)

    def observation(self, obs: np.ndarray) -> np.ndarray:
        return np.asarray(obs, dtype=np.float32)


class _Observe(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Dict observations: observation.state (D,) float32 and observation.images.<cam> (3, S, S) uint8 rendered
    offscreen (``corner`` turned upright)."""

    def __init__(self, env: gym.Env, cameras: tuple[str, ...], image_size: int) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, cameras=cameras, image_size=image_size)
        gym.ObservationWrapper.__init__(self, env)
        for cam in cameras:
            if cam not in CAMERAS:
                raise ValueError(f"cameras: unknown Meta-World camera {cam!r}; known: {CAMERAS}")
        self.cameras, self.image_size = cameras, int(image_size)
        spaces: dict[str, gym.Space] = {"observation.state": env.observation_space}
        for cam in cameras:
            spaces[f"observation.images.{cam}"] = Box(0, 255, (3, self.image_size, self.image_size), np.uint8)
        self.observation_space = Dict(spaces)
        self._renderer: mujoco.Renderer | None = None

    def observation(self, obs: np.ndarray) -> dict[str, Any]:
        out: dict[str, Any] = {"observation.state": np.asarray(obs, dtype=np.float32)}
        if self.cameras:
            u = self.env.unwrapped
            if self._renderer is None:
                self._renderer = mujoco.Renderer(u.model, self.image_size, self.image_size)
            for cam in self.cameras:
                self._renderer.update_scene(u.data, camera=cam)
                img = self._renderer.render()
                if cam in FLIPPED_CAMERAS:
                    img = img[::-1, ::-1]
                out[f"observation.images.{cam}"] = np.ascontiguousarray(img.transpose(2, 0, 1))
        return out

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        super().close()


def _make_mt1(
    task: str,
    task_seed: int = 0,
    render_mode: str | None = None,
    cameras: tuple[str, ...] | list[str] = (),
    image_size: int = 84,
    success_bonus: float = 0.0,
    reset_curriculum: float = 0.0,
    reset_curriculum_scope: str = "env",
    reset_curriculum_priority: str = "failure",
    reset_curriculum_temperature: float = 1.0,
) -> gym.Env:
    """Entry point of ``robopolicy/MetaWorld-v3`` and ``robopolicy/MetaWorld-<task>``: one MT1 task env (Meta-World's
    inner time limit is 500). With ``cameras`` the observation is a Dict with images; ``success_bonus`` is added
    to the reward of every successful step; ``reset_curriculum`` (a weight in [0, 1], a training-only option:
    ``env.train_kwargs``) draws the configurations the env's episodes failed more often, or with
    ``reset_curriculum_scope="run"`` the ones every env's episodes failed, scored by failure rate, its rank or
    learnability (``reset_curriculum_priority``) and tempered (``reset_curriculum_temperature``;
    ``robopolicy.reset_curriculum``)."""
    _check_task(task)
    env = gym.make("Meta-World/MT1", env_name=task, seed=task_seed, render_mode=render_mode, disable_env_checker=True)
    env = _SeededTaskReset(env)
    if reset_curriculum:
        env = _ResetCurriculum(env, reset_curriculum, reset_curriculum_scope, reset_curriculum_priority,
                               reset_curriculum_temperature)
    env = _ConfigSweep(env)  # off unless an evaluation starts it
    env = _Float32State(env)
    if success_bonus:
        env = _SuccessBonus(env, success_bonus)
    if cameras:
        env = _Observe(env, tuple(cameras), image_size)
    return env


class MetaWorldMT10(gym.Env):
    """MT10 as one env: each reset draws one of the 10 tasks (``options={"task": name}`` picks it) and the
    observation says which, in words and as a one-hot.

    observation.state  (49,) float32: Meta-World's 39-D state, then the one-hot of the task (10,)
    task               the task's instruction string, e.g. "open the drawer"
    observation.images.<cam> (3, S, S) uint8 with ``cameras``
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": FPS}

    def __init__(self, task_seed: int = 0, render_mode: str | None = None, cameras: tuple[str, ...] | list[str] = (),
                 image_size: int = 84) -> None:
        self.task_seed, self.render_mode, self.cameras, self.image_size = task_seed, render_mode, tuple(cameras), image_size
        self._envs: dict[str, gym.Env] = {}  # built on first use: one Meta-World env takes ~0.3 s
        self._task = MT10_TASKS[0]
        first = self._env(self._task)
        spaces = dict(first.observation_space.spaces)
        s = spaces["observation.state"]
        n = len(MT10_TASKS)
        spaces["observation.state"] = Box(-np.inf, np.inf, (s.shape[0] + n,), np.float32)
        spaces["task"] = Text(200, charset=string.printable)
        self.observation_space = Dict(spaces)
        self.action_space = first.action_space

    def current_task(self) -> str:
        return self._task

    def _env(self, task: str) -> _Observe:
        if task not in self._envs:
            env = _make_mt1(task, self.task_seed, self.render_mode)
            self._envs[task] = _Observe(env, self.cameras, self.image_size)
        return self._envs[task]

    def _obs(self, obs: dict[str, Any]) -> dict[str, Any]:
        onehot = np.zeros(len(MT10_TASKS), np.float32)
        onehot[MT10_TASKS.index(self._task)] = 1.0
        return {**obs, "observation.state": np.append(obs["observation.state"], onehot), "task": instruction(self._task)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        task = (options or {}).get("task") or MT10_TASKS[int(self.np_random.integers(len(MT10_TASKS)))]
        if task not in MT10_TASKS:
            raise ValueError(f"options.task: {task!r} is not an MT10 task; MT10: {MT10_TASKS}")
        self._task = task
        # The sub-env's seed follows ours, so reset(seed) reproduces the task and its goal configuration.
        obs, info = self._env(task).reset(seed=int(self.np_random.integers(2**31)))
        return self._obs(obs), info

    def step(self, action: np.ndarray):
        obs, reward, terminated, truncated, info = self._env(self._task).step(action)
        return self._obs(obs), float(reward), terminated, truncated, info

    def render(self) -> np.ndarray:
        return self._env(self._task).render()

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()


def register() -> None:
    """``robopolicy/MetaWorld-v3`` (task in kwargs), one id per task and MT10 (idempotent)."""
    if ENV_NAME not in gym.registry:
        gym.register(ENV_NAME, entry_point=_make_mt1, max_episode_steps=200)
    for task in TASKS:
        if task_env_id(task) not in gym.registry:
            gym.register(task_env_id(task), entry_point=_make_mt1, max_episode_steps=200, kwargs={"task": task})
    if MT10_NAME not in gym.registry:
        gym.register(MT10_NAME, entry_point=MetaWorldMT10, max_episode_steps=200)


register()


def make_metaworld_env(
    task: str,
    num_envs: int = 1,
    max_episode_steps: int | None = 200,
    seed: int = 0,
    task_seed: int = 0,
    **kwargs: Any,
) -> TorchVecEnv:
    """``make_gym_vec_env`` for one Meta-World task; ``task_seed`` seeds its 50 goal configurations."""
    _check_task(task)
    return make_gym_vec_env(
        ENV_ID,
        num_envs=num_envs,
        max_episode_steps=max_episode_steps,
        kwargs={"task": task, "task_seed": task_seed},
        seed=seed,
        **kwargs,
    )
