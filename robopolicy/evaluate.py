"""Evaluate a policy in its env: mean return and success with a 95% confidence interval,
and an mp4 of the first episode (MuJoCo offscreen rendering; MUJOCO_GL=egl headless)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from robopolicy.inference import EXECUTIONS, ChunkExecutor
from robopolicy.policy import Policy


@dataclass
class EvalResult:
    returns: list[float]
    lengths: list[int]
    successes: list[bool] = field(default_factory=list)
    video: Path | None = None
    configs: list[int] = field(default_factory=list)  # each episode's reset configuration (all_configs only)

    @staticmethod
    def _ci(x: list[float]) -> tuple[float, float]:
        """Mean and the half-width of a normal-approximation 95% interval."""
        a = np.asarray(x, dtype=np.float64)
        half = 1.96 * a.std(ddof=1) / math.sqrt(len(a)) if len(a) > 1 else float("nan")
        return float(a.mean()), float(half)

    def summary(self) -> dict[str, Any]:
        mean, half = self._ci(self.returns)
        out: dict[str, Any] = {"episodes": len(self.returns), "return_mean": mean, "return_ci95": half,
                               "length_mean": float(np.mean(self.lengths))}
        if self.successes:
            s_mean, s_half = self._ci([float(s) for s in self.successes])
            out |= {"success_rate": s_mean, "success_ci95": s_half}
        if self.video is not None:
            out["video"] = str(self.video)
        if self.configs and self.successes:
            out["failed_configs"] = sorted({c for c, s in zip(self.configs, self.successes, strict=True) if not s})
        return out


@contextmanager
def seeded_noise(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Common random numbers: torch draws inside come from ``seed``, and the global stream is left as it was, so two
    policies (or one before and after an update) are scored with the same noise."""
    with torch.random.fork_rng(devices=[device] if device is not None and device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def env_config(env_cfg: DictConfig | dict, training: bool) -> DictConfig:
    """The env node to instantiate. ``train_kwargs`` holds env kwargs for the training env only (a reset
    curriculum reshapes the task's distribution): merged into ``kwargs`` when ``training``, dropped otherwise, so
    evaluation always scores the task's own distribution."""
    cfg = OmegaConf.create(OmegaConf.to_container(env_cfg, resolve=True) if isinstance(env_cfg, DictConfig) else env_cfg)
    extra = cfg.pop("train_kwargs", None)
    if training and extra:
        cfg.kwargs = OmegaConf.merge(cfg.get("kwargs") or {}, extra)
    return cfg


def eval_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The metrics.jsonl entries of an evaluation summary."""
    out = {"eval/return": summary["return_mean"]}
    if "success_rate" in summary:
        out["eval/success"] = summary["success_rate"]
    return out


@torch.no_grad()
def evaluate(
    policy: Policy,
    env_cfg: DictConfig | dict,
    episodes: int = 10,
    deterministic: bool = True,
    seed: int = 12345,
    video_path: Path | None = None,
    max_envs: int = 10,
    execution: str = "chunk",
    n_action_steps: int | None = None,
    ensemble_coeff: float = 0.01,
    all_configs: bool = False,
    zero_start: bool = False,
) -> EvalResult:
    """Run ``episodes`` episodes in up to ``max_envs`` parallel envs (batched inference).

    ``execution``: chunk (the env runs each chunk of H actions), receding (first ``n_action_steps`` of each
    chunk, then re-plan) or ensemble (ACT temporal ensembling with ``ensemble_coeff``); see robopolicy.inference.

    Each env contributes the same number of episodes, taken in order, so short episodes are
    not over-represented (counting the first N to finish would bias towards failures).

    ``all_configs`` (single-task Meta-World): instead of drawing each episode's goal / object configuration, run
    every one of the task's 50 the same number of times (``episodes`` a multiple of 50); ``summary()`` names the
    failed ones. The draw of configurations then adds no error; what is left is the policy's own randomness, none
    for a noise-free deterministic action (a Gaussian's mean, a token argmax, a steered chain from its mean noise),
    while a diffusion or flow chain still starts from drawn noise. The printed interval is the binomial one, an upper
    bound here (docs/finetuning_results.md, session 34, measures both).

    ``zero_start`` (diffusion and flow heads, deterministic): start the chain from the noise's mean, 0, instead of a
    draw, so the action is a function of the observation alone and a sweep is exact. Off by default: drawn noise is
    how the heads are trained and how diffusion policies are usually run; session 35 measured the two on twelve
    checkpoints (docs/finetuning_results.md).

    The policy's own randomness (a diffusion chain's starting noise, a sampled action) is drawn from a
    torch generator seeded with ``seed`` and forked from the global one, so the same policy scores the
    same on every call and two policies are compared on common random numbers: a before/after
    difference then measures the change, not sampling noise.
    """
    if episodes <= 0:
        raise ValueError(f"episodes must be positive, got {episodes}")
    if zero_start:
        check_zero_start(policy, deterministic)
    if video_path is not None:
        os.environ.setdefault("MUJOCO_GL", "egl")
    n_envs = min(episodes, max_envs)
    per_env = math.ceil(episodes / n_envs)
    env_cfg = env_config(env_cfg, training=False)
    env_cfg.num_envs, env_cfg.vectorization, env_cfg.seed = n_envs, "sync", seed
    env_cfg.render_mode = "rgb_array" if video_path is not None else None
    if execution not in EXECUTIONS:
        raise ValueError(f"execution: unknown {execution!r}; expected one of {EXECUTIONS}")
    actor: Any = policy
    if execution != "chunk":  # the policy decides every env step; the env executes one action per call
        env_cfg.chunk, env_cfg.execute = 1, None
        actor = ChunkExecutor(policy, execution, n_action_steps, ensemble_coeff)
    env = instantiate(env_cfg)
    n_configs = _sweep_configs(env, env_cfg, episodes, n_envs) if all_configs else 0
    was_training = policy.training
    policy.eval()
    if zero_start:
        policy.head.zero_start = True
    done_per_env: list[list] = [[] for _ in range(n_envs)]
    frames: list[np.ndarray] = []
    with seeded_noise(seed):
        try:
            obs = env.reset(seed=seed)
            if hasattr(actor, "reset"):  # nothing carried over from an earlier evaluation
                actor.reset()
            while sum(len(d) for d in done_per_env) < n_envs * per_env:
                if video_path is not None and not done_per_env[0]:
                    frames.append(env.render())  # env 0's first episode
                step = env.step(actor.act(obs, deterministic=deterministic).actions)
                obs = step.obs
                if hasattr(actor, "reset"):  # per-env inference state (ensembling, observation history)
                    actor.reset(step.terminated | step.truncated)
                for ep in step.episodes:
                    i = max(ep.env_index, 0)
                    if len(done_per_env[i]) < per_env:
                        done_per_env[i].append(ep)
        finally:
            env.close()
            policy.train(was_training)
            if zero_start:
                policy.head.zero_start = False
    # Round-robin over envs so the first ``episodes`` taken are spread evenly.
    ordered = [done_per_env[i][k] for k in range(per_env) for i in range(n_envs)][:episodes]
    result = EvalResult(returns=[e.ret for e in ordered], lengths=[e.length for e in ordered],
                        successes=[e.success for e in ordered if e.success is not None])
    if all_configs:  # episode j of ``ordered`` ran configuration (seed + j) mod n: env i's k-th is j = i + k * n_envs
        result.configs = [(seed + j) % n_configs for j in range(episodes)]
    if video_path is not None and frames:
        result.video = write_video(frames, video_path, fps=int(getattr(env, "render_fps", 30) or 30))
    return result


def check_zero_start(policy: Policy, deterministic: bool) -> None:
    """``evaluate(zero_start=True)``'s preconditions, with its messages."""
    head = getattr(policy, "head", policy)  # a LeRobot policy has no head of ours
    if not hasattr(head, "zero_start"):
        raise ValueError(f"zero_start: the {type(head).__name__} starts from no noise; only the diffusion and "
                         "flow heads do")
    if not deterministic:
        raise ValueError("zero_start needs deterministic acting: a sampled action draws its starting noise")


def check_all_configs(env_cfg: DictConfig | dict, episodes: int) -> None:
    """Fail now, with ``evaluate``'s message, if ``evaluate(all_configs=True)`` could not run ``episodes`` episodes
    of ``env_cfg``: builds one env, asks it for its configurations and closes it."""
    cfg = env_config(env_cfg, training=False)
    cfg.num_envs, cfg.vectorization, cfg.render_mode = 1, "sync", None
    env = instantiate(cfg)
    _sweep_configs(env, cfg, episodes, 1)
    env.close()


def _sweep_configs(env: Any, env_cfg: DictConfig, episodes: int, n_envs: int) -> int:
    """Ask each env to run its fixed reset configurations in order (stride ``n_envs``; env i is seeded seed + i, so
    the round-robin order of episodes runs configurations seed, seed + 1, ...); returns how many there are."""
    try:
        counts = env.call("sweep_reset_configs", n_envs)
    except AttributeError:
        env.close()
        raise ValueError(f"all_configs: env {env_cfg.get('id')!r} has no fixed set of reset configurations to sweep "
                         "(single-task Meta-World envs have 50)") from None
    n = int(counts[0])
    if episodes % n:
        env.close()
        raise ValueError(f"all_configs: episodes must be a multiple of the task's {n} configurations, got {episodes}")
    return n


def write_video(frames: list[np.ndarray], path: Path, fps: int = 30) -> Path:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(str(path), frames, fps=fps, macro_block_size=1)
    return path
