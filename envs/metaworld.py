"""Meta-World single tasks (MT1, v3) through ``make_gym_vec_env``, and their scripted experts.

The gymnasium id is ``envs.metaworld:robopolicy/MetaWorld-v3`` with ``kwargs.task`` the task (e.g. "reach-v3");
the module prefix makes gymnasium import this file, which registers the id, so ``import envs`` stays free of
Meta-World's import cost. It is Meta-World's ``Meta-World/MT1`` plus one fix: Meta-World's ``reset`` ignores its seed, so
the goal/object configuration MT1 draws at each reset (one of 50, seeded by ``kwargs.task_seed``) did not follow
``reset(seed)``; ``_SeededTaskReset`` reseeds Meta-World's RNG first, making runs reproducible.

    observation.state  (B, 39) float32: hand xyz, gripper, object 1 pose (7), object 2 pose (7), the same
                       18 values one step earlier, goal xyz
    action             (B, H, 4) in [-1, 1]: hand xyz delta, gripper
    info["success"]    per step; ``EpisodeStats.success`` is True once any step succeeded

Meta-World runs at 80 Hz (frame_skip 5 x 2.5 ms) and its own time limit is 500 steps (``max_path_length``);
our configs use 200, enough for the scripted experts on reach / push / pick-place.
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from envs.gym_vec import TorchVecEnv, make_gym_vec_env

ENV_NAME = "robopolicy/MetaWorld-v3"
ENV_ID = f"envs.metaworld:{ENV_NAME}"
FPS = 80  # 1 / (frame_skip 5 * timestep 0.0025 s); also Meta-World's metadata["render_fps"]

# task -> (scripted expert class in metaworld.policies, instruction stored with every demo frame)
TASKS: dict[str, tuple[str, str]] = {
    "reach-v3": ("SawyerReachV3Policy", "reach the goal position"),
    "push-v3": ("SawyerPushV3Policy", "push the puck to the goal"),
    "pick-place-v3": ("SawyerPickPlaceV3Policy", "pick up the puck and place it at the goal"),
}


class ScriptedExpert(Protocol):
    def get_action(self, obs: np.ndarray) -> np.ndarray: ...


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


class _SeededTaskReset(gym.Wrapper):
    """Make ``reset(seed)`` seed Meta-World: its ``reset`` ignores the seed, so reseed its RNG (``env.seed``)
    first; MT1's task draw then comes from the freshly seeded RNG."""

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.unwrapped.seed(seed)
        return self.env.reset(options=options)


def _make_mt1(task: str, task_seed: int = 0, render_mode: str | None = None) -> gym.Env:
    """Entry point of ``robopolicy/MetaWorld-v3``: one MT1 task env (Meta-World's inner time limit is 500)."""
    _check_task(task)
    import metaworld  # noqa: F401  (registers Meta-World/*)

    env = gym.make("Meta-World/MT1", env_name=task, seed=task_seed, render_mode=render_mode, disable_env_checker=True)
    return _SeededTaskReset(env)


def register() -> None:
    if ENV_NAME not in gym.registry:
        gym.register(ENV_NAME, entry_point=_make_mt1, max_episode_steps=200)


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
