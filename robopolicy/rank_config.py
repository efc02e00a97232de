"""Typed schema of ``configs/rank.yaml`` (``robopolicy rank``), registered in Hydra's ConfigStore."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class OODConfig:
    method: str = "behaviour"
    """behaviour (action gap on the recorded real episodes) or input (z-score of their states); robopolicy.ranking."""
    batch_size: int = 4096
    """Recorded frames per forward pass."""


@dataclass
class CombineConfig:
    method: str = "filter"
    """filter (VSDR: sim success validates, the OOD score orders the validated) or rank_mean."""
    keep: float = 0.8
    """filter: a candidate is validated when its sim success is >= keep * the best sim success."""


@dataclass
class RankConfig:
    candidates: list[str] = MISSING
    """Policy folders, checkpoint folders or run folders (Policy.from_pretrained / robopolicy eval's ckpt=)."""
    names: list[str] = field(default_factory=list)
    """Display names, one per candidate; empty: the folder names."""
    real_data: str = MISSING
    """LeRobotDataset of the few episodes recorded on the real robot (e.g. robopolicy demos env=arm_pick_place_real)."""
    env: Any = MISSING
    """The simulator the candidates are validated in (configs/env/*.yaml)."""
    sim_episodes: int = 50
    """Episodes per candidate in simulation."""
    seed: int = 4242
    """Seed of the simulation episodes (the same for every candidate: common random numbers)."""
    ood: OODConfig = field(default_factory=OODConfig)
    combine: CombineConfig = field(default_factory=CombineConfig)
    output: str = "rank.json"
    """Where the ranking is written as JSON."""
    torch_threads: int = 1
    """torch.set_num_threads for the candidates' forward passes."""


def register_rank_config() -> None:
    ConfigStore.instance().store(name="rank_schema", node=RankConfig)
