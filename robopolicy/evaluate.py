"""Evaluate a policy in its env: mean return and success with a 95% confidence interval,
and an mp4 of the first episode (MuJoCo offscreen rendering; MUJOCO_GL=egl headless)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from robopolicy.policy import Policy


@dataclass
class EvalResult:
    returns: list[float]
    lengths: list[int]
    successes: list[bool] = field(default_factory=list)
    video: Path | None = None

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
        return out


@torch.no_grad()
def evaluate(
    policy: Policy,
    env_cfg: DictConfig | dict,
    episodes: int = 10,
    deterministic: bool = True,
    seed: int = 12345,
    video_path: Path | None = None,
) -> EvalResult:
    if episodes <= 0:
        raise ValueError(f"episodes must be positive, got {episodes}")
    if video_path is not None:
        os.environ.setdefault("MUJOCO_GL", "egl")
    env_cfg = OmegaConf.create(OmegaConf.to_container(env_cfg, resolve=True) if isinstance(env_cfg, DictConfig) else env_cfg)
    env_cfg.num_envs, env_cfg.vectorization, env_cfg.seed = 1, "sync", seed
    env_cfg.render_mode = "rgb_array" if video_path is not None else None
    env = instantiate(env_cfg)
    policy.eval()
    result = EvalResult(returns=[], lengths=[])
    frames: list[np.ndarray] = []
    try:
        obs = env.reset(seed=seed)
        while len(result.returns) < episodes:
            if video_path is not None and not result.returns:
                frames.append(env.render())
            step = env.step(policy.act(obs, deterministic=deterministic).actions)
            obs = step.obs
            for ep in step.episodes:
                result.returns.append(ep.ret)
                result.lengths.append(ep.length)
                if ep.success is not None:
                    result.successes.append(ep.success)
    finally:
        env.close()
    if video_path is not None and frames:
        result.video = write_video(frames, video_path, fps=int(getattr(env, "render_fps", 30) or 30))
    return result


def write_video(frames: list[np.ndarray], path: Path, fps: int = 30) -> Path:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(str(path), frames, fps=fps, macro_block_size=1)
    return path
