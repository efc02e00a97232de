"""Record scripted-expert demonstrations of a Meta-World task or of our arm as a LeRobotDataset (v3, no videos).

    record_demos("reach-v3", episodes=50, root="data/reach-50")   # what `robopolicy demos` calls
    record_demos("robopolicy/Arm-PickPlace-v0", 50, "data/pp", env_kwargs={"randomization": {"enabled": True}})

Per frame t (LeRobot's convention: ``next.*`` is what the action at t led to):
    observation.state  (39,) float32   obs_t
    action             (4,)  float32   a_t in [-1, 1] (after ``action_noise`` and clipping; the expert's own
                                       action under ``explore_noise`` and ``driver``)
    next.reward        (1,)  float32   r_{t+1}
    next.success       (1,)  bool      info["success"] after a_t
    next.done          (1,)  bool      last frame of the episode
    suboptimal         (1,)  bool      the episode was recorded with the noisy (imperfect) policy
    task               instruction string, e.g. "reach the goal position"
Our arm (task = its gymnasium id or task name) stores its own dims (state 26 or 19, action 4 or 7) at 25 fps and
also, per frame:
    randomization           (6,) float32  the episode's physics parameters (envs/randomization.py PARAM_NAMES)
    observation.privileged  (22,) float32 with env_kwargs.privileged
    observation.images.<c>  (S, S, 3) uint8 (PNG) with env_kwargs.cameras
With ``driver`` (a saved policy) the policy acts and the expert only labels: DAgger's data aggregation, the
learner's own states each with the expert's action (and, for the arm, the privileged state a camera estimator learns).
An episode ends at the time limit or, with ``stop_on_success``, at its first successful frame.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

from envs.arm import ENV_IDS as ARM_IDS
from envs.randomization import PARAM_NAMES

STATE_DIM, ACTION_DIM = 39, 4
SUBOPTIMAL_NOISE = 1.0  # action noise std of an imperfect episode: the expert mostly fails with it

FEATURES = {
    "observation.state": {"dtype": "float32", "shape": (STATE_DIM,), "names": None},
    "action": {"dtype": "float32", "shape": (ACTION_DIM,), "names": ["dx", "dy", "dz", "gripper"]},
    "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
    "next.success": {"dtype": "bool", "shape": (1,), "names": None},
    "next.done": {"dtype": "bool", "shape": (1,), "names": None},
    "suboptimal": {"dtype": "bool", "shape": (1,), "names": None},
}


class _Source(NamedTuple):
    env: gym.Env
    expert: Any
    text: str
    fps: int
    features: dict[str, dict[str, Any]]


def _metaworld_source(task: str, max_episode_steps: int) -> _Source:
    from envs.metaworld import ENV_NAME, FPS, instruction, scripted_expert

    env = gym.make(ENV_NAME, task=task, max_episode_steps=max_episode_steps, disable_env_checker=True)
    return _Source(env, scripted_expert(task), instruction(task), FPS, FEATURES)


def _arm_source(task: str, max_episode_steps: int, env_kwargs: dict[str, Any]) -> _Source:
    from envs.arm_experts import arm_expert

    env_id = ARM_IDS.get(task, task)
    env = gym.make(env_id, max_episode_steps=max_episode_steps, disable_env_checker=True, **env_kwargs)
    u = env.unwrapped
    space = env.observation_space
    state = space["observation.state"] if isinstance(space, gym.spaces.Dict) else space
    features = {**FEATURES,
                "observation.state": {"dtype": "float32", "shape": state.shape, "names": None},
                "action": {"dtype": "float32", "shape": env.action_space.shape, "names": None},
                "randomization": {"dtype": "float32", "shape": (len(PARAM_NAMES),), "names": list(PARAM_NAMES)}}
    if isinstance(space, gym.spaces.Dict):
        for key, sp in space.spaces.items():
            if key == "observation.privileged":
                features[key] = {"dtype": "float32", "shape": sp.shape, "names": None}
            elif key.startswith("observation.images."):
                c, h, w = sp.shape
                features[key] = {"dtype": "image", "shape": (h, w, c), "names": ["height", "width", "channels"]}
    return _Source(env, arm_expert(env), u.task.instruction, u.metadata["render_fps"], features)


def _obs_frame(obs: Any, env: gym.Env, features: dict[str, Any]) -> dict[str, np.ndarray]:
    """The observation part of one frame: state (and privileged, images (H, W, 3), randomization for the arm)."""
    if not isinstance(obs, dict):
        obs = {"observation.state": obs}
    frame = {"observation.state": np.asarray(obs["observation.state"], dtype=np.float32)}
    for key, value in obs.items():
        if key.startswith("observation.images."):
            frame[key] = np.ascontiguousarray(np.asarray(value).transpose(1, 2, 0))
        elif key == "observation.privileged":
            frame[key] = np.asarray(value, dtype=np.float32)
    if "randomization" in features:
        frame["randomization"] = env.unwrapped.randomization_vector()
    return frame


class _PolicyDriver:
    """A saved chunk policy acting in one unbatched env. ``ChunkExecutor``'s receding horizon runs the first n of each
    predicted chunk (1, H, A) open-loop, as ``ActionChunk`` does in training: n is the run's ``env.execute`` where the
    policy's run config says it, else H. Torch draws come from the seed that ``reset`` is given (one per episode)."""

    def __init__(self, path: str | Path):
        from omegaconf import OmegaConf

        from robopolicy.checkpoint import load_policy, load_run_config, resolve_checkpoint
        from robopolicy.inference import ChunkExecutor

        ckpt = resolve_checkpoint(path)
        run_cfg = load_run_config(ckpt)
        n = OmegaConf.select(run_cfg, "env.execute") if run_cfg is not None else None
        self.executor = ChunkExecutor(load_policy(ckpt).eval(), "receding", n_action_steps=n)

    def reset(self, seed: int) -> None:
        import torch

        torch.manual_seed(seed)
        self.executor.reset()

    def act(self, obs: Any) -> np.ndarray:
        import torch

        if not isinstance(obs, dict):
            obs = {"observation.state": obs}
        batch = {k: [v] if isinstance(v, str) else torch.from_numpy(np.asarray(v))[None] for k, v in obs.items()}
        with torch.no_grad():
            return self.executor.act(batch, deterministic=True).actions[0, 0].numpy().astype(np.float64)


def _episode_seed(seed: int, episode: int) -> np.random.SeedSequence:
    """Episode ``episode``'s noise (and driver) seed: its own stream, so that episodes recorded in separate worker
    processes are the ones a single process records."""
    return np.random.SeedSequence((seed, episode))


def _perturbed(action: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """``action`` plus N(0, std^2) noise (none at std 0), clipped to the action bounds [-1, 1], float32."""
    if std > 0:
        action = action + rng.normal(0.0, std, size=action.shape)
    return np.clip(action, -1.0, 1.0).astype(np.float32)


def record_demos(
    task: str,
    episodes: int,
    root: str | Path,
    seed: int = 0,
    action_noise: float = 0.0,
    suboptimal_frac: float = 0.0,
    explore_noise: float = 0.0,
    driver: str | Path | None = None,
    max_episode_steps: int = 200,
    progress: bool = True,
    stop_on_success: bool = True,
    overwrite: bool = False,
    env_kwargs: dict[str, Any] | None = None,
    workers: int = 1,
    first_episode: int = 0,
    events: Any = None,
) -> Path:
    """Run the scripted expert of ``task`` for ``episodes`` episodes and write them to ``root``.

    task:            a Meta-World task ("reach-v3") or our arm's id / task name ("robopolicy/Arm-PickPlace-v0").
    env_kwargs:      gym.make kwargs of the arm env (control, privileged, cameras, randomization, ...); Meta-World
                     ignores them.
    seed:            episode i resets with seed + i (goal/object placement), noise comes from ``seed`` too.
    action_noise:    std of Gaussian noise added to every expert action (then clipped to [-1, 1]).
    suboptimal_frac: probability that an episode uses noise std ``SUBOPTIMAL_NOISE`` instead (imperfect demos).
    explore_noise:   std of Gaussian noise added to the EXECUTED action only (the expert's or the driver's); the
                     frame keeps the expert's clean action as its label (DART, Laskey et al. 2017): the data covers
                     the states a learner drifts into, each labelled with the expert's correction. ``next.*`` then
                     follow the noisy action.
    driver:          a saved policy (folder or checkpoint) that acts instead of the expert, chunk by chunk; the
                     expert still labels every frame (DAgger). The printed success rate is then the policy's.
    workers:         record in this many processes, each a contiguous block of the episodes into its own folder,
                     then merged into ``root`` by LeRobot's ``aggregate_datasets``: the same episodes, frame for frame,
                     as one process records (rendering cameras is the cost, and it is one core per process).
    first_episode, events: set by the worker processes (the episode index of their first episode; a queue that
                     receives each finished episode's success).
    Returns ``root``; prints the success rate of the recorded episodes.
    """
    from robopolicy.data.demos import quiet_lerobot_video_probe

    quiet_lerobot_video_probe()  # before lerobot's import, which probes the video backend
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from rich.console import Console
    from rich.progress import Progress

    episodes, max_episode_steps = int(episodes), int(max_episode_steps)
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
    if action_noise < 0:
        raise ValueError(f"action_noise must be >= 0, got {action_noise}")
    if explore_noise < 0:
        raise ValueError(f"explore_noise must be >= 0, got {explore_noise}")
    if not 0.0 <= suboptimal_frac <= 1.0:
        raise ValueError(f"suboptimal_frac must be in [0, 1], got {suboptimal_frac}")
    if driver is not None and not Path(driver).exists():
        raise FileNotFoundError(f"driver: no policy at {driver}")
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    root = Path(root)
    if root.exists():
        if not overwrite:
            raise FileExistsError(f"root: {root} already exists; choose another folder or pass overwrite=true")
        shutil.rmtree(root)
    workers = min(int(workers), episodes)
    if workers > 1:
        from envs.demos_parallel import record_in_workers

        kwargs = {"task": task, "seed": seed, "action_noise": action_noise, "suboptimal_frac": suboptimal_frac,
                  "explore_noise": explore_noise, "driver": driver, "max_episode_steps": max_episode_steps,
                  "stop_on_success": stop_on_success, "env_kwargs": env_kwargs}
        return record_in_workers(root, episodes, workers, kwargs, progress)

    env_kwargs = dict(env_kwargs or {})
    env_kwargs.pop("task", None)  # Meta-World configs carry it in kwargs; here it is the ``task`` argument
    is_arm = task in ARM_IDS or task in ARM_IDS.values()
    src = _arm_source(task, max_episode_steps, env_kwargs) if is_arm else _metaworld_source(task, max_episode_steps)
    env, expert, text = src.env, src.expert, src.text
    actor = _PolicyDriver(driver) if driver is not None else None
    repo_id = f"local/{task.split('/')[-1]}"
    ds = LeRobotDataset.create(repo_id=repo_id, fps=src.fps, features=src.features, root=root, use_videos=False)
    console = Console(stderr=True)
    successes: list[bool] = []
    try:
        with Progress(*progress_columns(task), console=console, disable=not progress) as bar:
            job = bar.add_task("episodes", total=episodes, rate="-")
            for ep in range(first_episode, first_episode + episodes):
                seeds = _episode_seed(seed, ep)
                rng = np.random.default_rng(seeds)
                bad = rng.random() < suboptimal_frac
                std = SUBOPTIMAL_NOISE if bad else action_noise
                obs, _ = env.reset(seed=seed + ep)
                if actor is not None:
                    actor.reset(int(seeds.generate_state(1)[0]))
                success = False
                for _ in range(max_episode_steps):
                    action = np.asarray(expert.get_action(obs), dtype=np.float64)
                    action = _perturbed(action, std, rng)
                    executed = action if actor is None else _perturbed(actor.act(obs), 0.0, rng)
                    executed = _perturbed(executed, explore_noise, rng) if explore_noise > 0 else executed
                    next_obs, reward, terminated, truncated, info = env.step(executed)
                    step_success = bool(info.get("success", False))
                    success |= step_success
                    done = terminated or truncated or (stop_on_success and step_success)
                    ds.add_frame({
                        **_obs_frame(obs, env, src.features),
                        "action": action,
                        "next.reward": np.array([reward], dtype=np.float32),
                        "next.success": np.array([step_success]),
                        "next.done": np.array([done]),
                        "suboptimal": np.array([bad]),
                        "task": text,
                    })
                    obs = next_obs
                    if done:
                        break
                ds.save_episode()
                successes.append(success)
                bar.update(job, advance=1, rate=f"{np.mean(successes):.0%}")
                if events is not None:
                    events.put(success)
    finally:
        env.close()
        ds.finalize()
    if events is None:
        report_success(task, root, successes)
    return root


def progress_columns(label: str) -> list:
    """The recording bar: episodes done and the success rate so far (``rate`` field)."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    return [TextColumn(f"[bold]demos[/] {label}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("success {task.fields[rate]}"), TimeRemainingColumn()]


def report_success(task: str, root: Path, successes: list[bool]) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold green]demos[/]: {len(successes)} episodes of {task} -> {root}, "
                               f"success rate {np.mean(successes):.0%} ({sum(successes)}/{len(successes)})")
