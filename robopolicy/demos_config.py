"""Typed schema of ``configs/demos.yaml`` (``robopolicy demos``), registered in Hydra's ConfigStore."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class RecorderConfig:
    _target_: str = "envs.demos.record_demos"
    """Function that records the demos and returns the dataset folder (robopolicy never imports envs)."""
    task: str = MISSING
    """Task name, e.g. reach-v3 (by default the env config's kwargs.task, else its id: our arm's)."""
    episodes: int = MISSING
    root: str = MISSING
    seed: int = 0
    action_noise: float = 0.0
    suboptimal_frac: float = 0.0
    explore_noise: float = 0.0
    driver: str | None = None
    max_episode_steps: int = 200
    stop_on_success: bool = True
    progress: bool = True
    overwrite: bool = False
    workers: int = 1
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """The env config's kwargs (our arm: control, privileged, cameras, randomization)."""


@dataclass
class DemosConfig:
    episodes: int = 50
    """Episodes to record."""
    root: str = MISSING
    """Output folder of the LeRobotDataset (must not exist unless overwrite=true)."""
    seed: int = 0
    """Episode i resets with seed + i; also seeds the action noise."""
    action_noise: float = 0.0
    """Std of Gaussian noise added to every expert action (env units, then clipped)."""
    suboptimal_frac: float = 0.0
    """Probability that an episode is recorded with a much noisier policy (imperfect demos)."""
    explore_noise: float = 0.0
    """Std of Gaussian noise on the executed action only; frames keep the expert's clean action (DART)."""
    driver: str | None = None
    """A saved policy that acts instead of the expert; the expert labels its states (DAgger data aggregation)."""
    overwrite: bool = False
    """Replace an existing root folder."""
    workers: int = 1
    """Processes recording in parallel (contiguous blocks of episodes, merged into root; the same frames as one)."""
    stop_on_success: bool = True
    """End an episode at its first successful frame; false records the whole episode (returns for a critic)."""
    env: Any = MISSING
    """The env config (configs/env/*.yaml); its kwargs.task and max_episode_steps feed the recorder."""
    recorder: RecorderConfig = field(default_factory=RecorderConfig)


def register_demos_config() -> None:
    ConfigStore.instance().store(name="demos_schema", node=DemosConfig)
