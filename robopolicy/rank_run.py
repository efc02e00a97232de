"""`robopolicy rank`: order candidate policies for the real robot from sim success and recorded real episodes.

    robopolicy rank 'candidates=[runs/bc-a,runs/bc-b,...]' real_data=data/real-pp   # env=arm_pick_place_dr

For every candidate: its success in ``env`` over ``sim_episodes`` episodes (the same seeds for all), and an
out-of-distribution score on the recorded real episodes (``ood.method``, robopolicy/ranking.py); the two are
combined (``combine.method``) into the predicted order. Prints a table, writes ``output`` (JSON):

    {"candidates": [{"name", "path", "sim_success", "ood", "predicted_score", "predicted_rank",
                     "sim_only_rank"}, ...],           # in predicted order
     "ood_method", "combine", "keep", "sim_episodes", "sim_env", "real_data", "real_episodes", "real_frames"}

The real variant's parameters are never read here: only the recorded episodes (observations and actions).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from robopolicy.checkpoint import load_policy, resolve_checkpoint
from robopolicy.evaluate import evaluate
from robopolicy.ranking import (
    COMBINE_METHODS,
    OOD_METHODS,
    average_ranks,
    behaviour_ood_score,
    check_policy_fits,
    combine,
    input_ood_score,
    sim_only_scores,
)
from robopolicy.train_run import ConfigError
from robopolicy.types import OBS_STATE


def check_rank_config(cfg: DictConfig) -> tuple[list[str], list[str]]:
    """Candidate paths and names, after checking every key the run depends on (ConfigError names the key)."""
    candidates = [str(c) for c in cfg.candidates]
    if len(candidates) < 2:
        raise ConfigError(f"candidates: need at least 2 policies to rank, got {len(candidates)}")
    names = [str(n) for n in cfg.names] or [Path(c).name for c in candidates]
    if len(names) != len(candidates):
        raise ConfigError(f"names: {len(names)} names for {len(candidates)} candidates")
    if len(set(names)) != len(names):
        raise ConfigError(f"names: must be unique, got {names} (give names=[...] when folder names repeat)")
    if cfg.ood.method not in OOD_METHODS:
        raise ConfigError(f"ood.method: unknown {cfg.ood.method!r}; expected one of {OOD_METHODS}")
    if cfg.combine.method not in COMBINE_METHODS:
        raise ConfigError(f"combine.method: unknown {cfg.combine.method!r}; expected one of {COMBINE_METHODS}")
    if not 0.0 <= float(cfg.combine.keep) <= 1.0:
        raise ConfigError(f"combine.keep: must be in [0, 1], got {cfg.combine.keep}")
    if int(cfg.sim_episodes) < 1:
        raise ConfigError(f"sim_episodes: must be >= 1, got {cfg.sim_episodes}")
    for i, path in enumerate(candidates):
        try:
            resolve_checkpoint(path)
        except FileNotFoundError as err:
            raise ConfigError(f"candidates[{i}]: {err}") from err
    if not Path(cfg.real_data).exists():
        raise ConfigError(f"real_data: {cfg.real_data} does not exist (record it with robopolicy demos env=<real> ...)")
    return candidates, names


def load_real_episodes(cfg: DictConfig) -> Any:
    """The recorded real episodes as chunks of the env's H (robopolicy.data.demos.DemoData)."""
    from robopolicy.data.demos import load_demos  # imports lerobot: only when ranking runs

    try:
        with warnings.catch_warnings():  # HF datasets warns that the CLI turned its progress bars off
            warnings.filterwarnings("ignore", message=r"Cannot enable progress bars")
            return load_demos(cfg.real_data, chunk=int(cfg.env.chunk))
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"real_data: {err}") from err


def ood_score(policy: Any, method: str, real: Any, batch_size: int) -> float:
    obs = {OBS_STATE: real.obs[OBS_STATE]}
    if method == "behaviour":
        return behaviour_ood_score(policy, obs, real.actions, real.action_is_pad, batch_size=batch_size)
    return input_ood_score(policy, obs)


def run_rank(cfg: DictConfig, show_progress: bool = True) -> dict[str, Any]:
    """Score and order ``cfg.candidates``; writes ``cfg.output`` and returns the same dict."""
    torch.set_num_threads(int(cfg.torch_threads))
    candidates, names = check_rank_config(cfg)
    real = load_real_episodes(cfg)
    state_dim, action_dim = int(real.obs[OBS_STATE].shape[1]), int(real.actions.shape[2])
    policies = []
    for i, (path, name) in enumerate(zip(candidates, names, strict=True)):
        try:
            policy = load_policy(path)
            check_policy_fits(policy, name, state_dim, action_dim, chunk=int(cfg.env.chunk))
        except (ValueError, FileNotFoundError) as err:
            raise ConfigError(f"candidates[{i}] ({path}): {err}") from err
        policies.append(policy)

    sim, ood = [], []
    columns = (TextColumn("[bold]rank[/] {task.fields[name]}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not show_progress) as bar:
        job = bar.add_task("candidates", total=len(policies), name="")
        for name, policy in zip(names, policies, strict=True):
            bar.update(job, name=name)
            result = evaluate(policy, cfg.env, episodes=int(cfg.sim_episodes), deterministic=True, seed=int(cfg.seed))
            if not result.successes:
                raise ConfigError(f"env: {cfg.env.id} reports no info['success']; ranking needs a success flag")
            sim.append(float(np.mean(result.successes)))
            ood.append(ood_score(policy, str(cfg.ood.method), real, int(cfg.ood.batch_size)))
            bar.advance(job)

    predicted = combine(sim, ood, str(cfg.combine.method), float(cfg.combine.keep))
    predicted_rank = average_ranks(-predicted)
    sim_rank = average_ranks(-sim_only_scores(sim))
    rows = [{"name": n, "path": p, "sim_success": s, "ood": o, "predicted_score": float(ps),
             "predicted_rank": float(pr), "sim_only_rank": float(sr)}
            for n, p, s, o, ps, pr, sr in zip(names, candidates, sim, ood, predicted, predicted_rank, sim_rank, strict=True)]
    rows.sort(key=lambda r: r["predicted_rank"])
    out = {"candidates": rows, "ood_method": str(cfg.ood.method), "combine": str(cfg.combine.method),
           "keep": float(cfg.combine.keep), "sim_episodes": int(cfg.sim_episodes), "sim_env": str(cfg.env.id),
           "real_data": str(cfg.real_data), "real_episodes": int(real.num_episodes), "real_frames": len(real)}
    path = Path(cfg.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    out["output"] = str(path)
    return out


def print_ranking(result: dict[str, Any], console: Console) -> None:
    """The ranking as a table: predicted order, with the sim-only rank beside it."""
    table = Table(title=f"policy ranking ({result['combine']} of sim success and {result['ood_method']} OOD score; "
                        f"{result['real_episodes']} real episodes, {result['real_frames']} frames)")
    for col in ("rank", "candidate", "sim success", "OOD score", "sim-only rank"):
        table.add_column(col, justify="left" if col == "candidate" else "right")
    for r in result["candidates"]:
        table.add_row(f"{r['predicted_rank']:g}", r["name"], f"{100 * r['sim_success']:.0f}%", f"{r['ood']:.4f}",
                      f"{r['sim_only_rank']:g}")
    console.print(table)
    console.print(f"ranking written to {result['output']}")
