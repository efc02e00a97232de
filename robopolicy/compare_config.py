"""Typed schema of ``configs/compare.yaml`` (``robopolicy compare``), registered in Hydra's ConfigStore."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class CompareConfig:
    runs: list[str] = MISSING
    """Run folders or glob patterns (quote them for the shell); a folder without metrics.jsonl stands for the
    run folders below it."""
    names: list[str] = field(default_factory=list)
    """One arm name per pattern; empty: runs whose folder names differ only by a trailing seed form an arm."""
    metric: str = "eval/success"
    """The logged evaluation key to compare (eval/return for envs without success)."""
    threshold: float | None = 0.95
    """Report the first evaluation step at or above it (None: skip)."""
    budget: int | None = None
    """Only evaluations at or before this env step count for best and threshold (None: all)."""
    columns: list[int] = field(default_factory=list)
    """Env steps shown as table columns; empty: up to 8 spread over the evaluations."""
    markdown: bool = False
    """Also print the table as Markdown (for docs)."""
    plot: str | None = "compare.png"
    """Image of the curves (.png, .pdf, .svg or .jpg; None: no plot)."""
    output: str | None = "compare.json"
    """JSON with every figure of the table and each arm's settings (None: not written)."""


def register_compare_config() -> None:
    ConfigStore.instance().store(name="compare_schema", node=CompareConfig)
