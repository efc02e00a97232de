"""`robopolicy compare`: training runs side by side, grouped into arms, with what each arm changed.

    robopolicy compare 'runs=[runs/pp-lr1e-4-*,runs/pp-clip-*]'          # threshold=0.95 budget=1000000

A run is a folder holding ``metrics.jsonl`` (and the ``config.yaml`` the run wrote). Runs whose folder names
differ only by a trailing seed (``pp-lr1e-4-0``, ``pp-lr1e-4-1``) form one arm; ``names=[...]`` instead makes
each pattern one arm. An arm's settings are the
config keys that are the same across its runs and differ from another arm's: read off the resolved
configs, so a comparison says what was compared without anyone retyping the commands.

Per run: the metric at the initial evaluation, at chosen steps, its best over the periodic evaluations
within ``budget``, the final evaluation (fresh episodes), and the first evaluation step at or above
``threshold`` (for ``eval/success``, a step whose repeats were logged, ``stop_confirm``, counts only if their
confirmed success is at or above it too, as the run's own stop); per arm: the means and how many runs reached
the threshold. Prints the tables (``markdown=true``: also as Markdown, for docs), writes ``plot`` (one panel
per seed when the arms share their seeds: paired runs next to each other) and ``output`` (JSON), and
ends with one JSON line.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from robopolicy.checkpoint import LATEST, resolve_checkpoint
from robopolicy.policy import CONFIG_NAME
from robopolicy.run_logger import read_metrics
from robopolicy.train_run import ConfigError

# Keys that name a run rather than configure it: never an arm's setting.
RUN_IDENTITY = ("name", "seed", "runs_dir", "resume")
# What matplotlib can write: plot=none (Hydra's string, not None) is caught instead of saved as none.png.
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg")
SEED_SUFFIX = re.compile(r"[-_](?:s|seed)?\d+$")


@dataclass
class RunCurve:
    path: Path
    arm: str
    seed: int | None
    evals: dict[int, float]
    """Env step -> metric at the periodic evaluations, the initial one included."""
    initial: float | None
    final: float | None
    """The end-of-run evaluation on fresh episodes (eval/is_final), kept off the periodic curve."""
    final_step: int | None
    confirmed: dict[int, float]
    """Env step -> eval/confirmed_success where the evaluation was repeated (stop_confirm); it decides the threshold."""
    elapsed_s: dict[int, float]
    """Env step -> wall-clock since the run started (time/elapsed_s) at the periodic evaluations that log it."""
    settings: dict[str, Any]
    """The run's resolved config, flattened to dotted keys."""


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out |= flatten(value, f"{prefix}{key}.")
        return out
    return {prefix[:-1]: json.dumps(tree) if isinstance(tree, list) else tree}


def find_runs(patterns: Iterable[str]) -> list[list[Path]]:
    """Per glob pattern, the run folders it matches; a matched folder without metrics.jsonl contributes the
    run folders below it (a benchmark's root holds several)."""
    runs: list[list[Path]] = []
    for pattern in patterns:
        found: list[Path] = []
        for match in sorted(glob.glob(str(pattern))):
            path = Path(match)
            if (path / "metrics.jsonl").is_file():
                found.append(path)
            elif path.is_dir():
                found += runs_below(path)
        if not found:
            raise ConfigError(f"runs: {pattern!r} matches no run folder (a folder holding metrics.jsonl)")
        runs.append(found)
    return runs


def runs_below(root: Path) -> list[Path]:
    """Run folders under ``root``, following links to folders (an arm is often a folder of links to runs kept
    elsewhere; Path.rglob does not follow them before Python 3.13); each real folder is visited once, so a
    link cycle ends."""
    found, visited = [], set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:
            subfolders.clear()
            continue
        visited.add(real)
        subfolders.sort()  # a run reached by two links is kept under the same name on every machine
        if "metrics.jsonl" in files:
            found.append(Path(folder))
    return sorted(found)


def arm_names(groups: list[list[Path]], names: list[str]) -> list[list[str]]:
    """``names[i]`` for every run of pattern i; without names, the folder name less its seed suffix, with the
    pattern's number added where two patterns give the same name (two benchmarks' ``ours-0``)."""
    if names:
        if len(names) != len(groups):
            raise ConfigError(f"names: {len(names)} names for {len(groups)} run patterns (one arm name per pattern)")
        return [[name] * len(paths) for name, paths in zip(names, groups)]
    stripped = [[SEED_SUFFIX.sub("", p.name) or p.name for p in paths] for paths in groups]
    origin: dict[str, set[int]] = {}
    for i, group in enumerate(stripped):
        for name in group:
            origin.setdefault(name, set()).add(i)
    return [[f"{name} ({i + 1})" if len(origin[name]) > 1 else name for name in group]
            for i, group in enumerate(stripped)]


def latest_policy_config(run: Path) -> dict[str, Any] | None:
    """The policy config.json of the run's newest checkpoint, if it has one."""
    if not (run / "checkpoints" / LATEST).is_file():  # a run stopped before its first checkpoint
        return None
    config = resolve_checkpoint(run) / "policy" / CONFIG_NAME
    if not config.is_file():
        return None
    data = json.loads(config.read_text())
    data.pop("format_version", None)
    return data


def load_run(path: Path, arm: str, metric: str) -> RunCurve:
    rows = read_metrics(path / "metrics.jsonl")
    logged = [r for r in rows if r.get(metric) is not None]
    if not logged:
        keys = sorted({k for r in rows for k in r if k.startswith("eval/") and not k.startswith("eval/is_")})
        raise ConfigError(f"metric: {path} logs no {metric!r} (its evaluation keys: {', '.join(keys) or 'none'})")
    config_file = path / "config.yaml"
    config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
    saved_policy = latest_policy_config(path)
    if saved_policy is not None:  # what was trained; older runs' config.yaml kept policy='s default under init_policy
        config["policy"] = saved_policy
    seed = config.get("seed")
    periodic = [r for r in logged if not r.get("eval/is_final")]
    initial = [r for r in periodic if r.get("eval/is_initial") or r["step"] == 0]
    final = [r for r in logged if r.get("eval/is_final")]
    return RunCurve(path=path, arm=arm, seed=int(seed) if seed is not None else None,
                    evals={int(r["step"]): float(r[metric]) for r in periodic},
                    initial=float(initial[0][metric]) if initial else None,
                    final=float(final[-1][metric]) if final else None,
                    final_step=int(final[-1]["step"]) if final else None,
                    confirmed={int(r["step"]): float(r["eval/confirmed_success"]) for r in periodic
                               if metric == "eval/success" and r.get("eval/confirmed_success") is not None},
                    elapsed_s={int(r["step"]): float(r["time/elapsed_s"]) for r in periodic if "time/elapsed_s" in r},
                    settings=flatten(config))


def arm_differences(runs: list[RunCurve]) -> dict[str, dict[str, Any]]:
    """Config key -> {arm: value} for the keys each arm holds constant over its runs and the arms set differently
    (None where an arm's config lacks the key); keys that vary within an arm (init_policy per seed) are left out."""
    arms: dict[str, list[RunCurve]] = {}
    for run in runs:
        arms.setdefault(run.arm, []).append(run)
    keys = sorted(set().union(*(r.settings for r in runs)) - set(RUN_IDENTITY))
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        values = {}
        for arm, members in arms.items():
            seen = {json.dumps(r.settings.get(key), sort_keys=True, default=str) for r in members}
            if len(seen) > 1:
                break
            values[arm] = members[0].settings.get(key)
        else:
            if len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) > 1:
                out[key] = values
    return out


def summarize(run: RunCurve, threshold: float | None, budget: int | None) -> dict[str, Any]:
    within = {s: v for s, v in run.evals.items() if budget is None or s <= budget}
    after_start = [(s, v) for s, v in sorted(within.items()) if s > 0 or run.initial is None]
    # A reading the repeats did not confirm is not a stop: the trainer would have gone on (trainer.py).
    hit = next((s for s, v in after_start if threshold is not None and run.confirmed.get(s, v) >= threshold), None)
    return {"run": str(run.path), "arm": run.arm, "seed": run.seed, "initial": run.initial,
            "best": max(within.values()) if within else None, "final": run.final,
            "last_step": max(run.evals) if run.evals else None, "steps_to_threshold": hit,
            "seconds_to_threshold": run.elapsed_s.get(hit) if hit is not None else None}


def table_steps(runs: list[RunCurve], columns: list[int], budget: int | None) -> list[int]:
    """The evaluation steps shown as columns: the given ones, else up to 8 spread over the shared steps."""
    if columns:
        return [int(c) for c in columns]
    steps = sorted(set().union(*(r.evals for r in runs)) - {0})
    steps = [s for s in steps if budget is None or s <= budget]
    if len(steps) <= 8:
        return steps
    return [steps[round(i * (len(steps) - 1) / 7)] for i in range(8)]


def step_label(step: int) -> str:
    return f"{step // 1000}k" if step >= 1000 else str(step)


def fmt(value: float | None, percent: bool) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{100 * value:.0f}%" if percent else f"{value:.4g}"


def reached_cell(summary: dict[str, Any]) -> str:
    hit, seconds = summary["steps_to_threshold"], summary["seconds_to_threshold"]
    if hit is None:
        return "not reached"
    return f"{hit:,}" + (f" ({seconds / 60:.0f} min)" if seconds is not None else "")


def table_rows(runs: list[RunCurve], summaries: list[dict[str, Any]], steps: list[int], percent: bool,
               threshold: float | None) -> tuple[list[str], list[list[str]]]:
    header = ["arm", "seed", "start", *[step_label(s) for s in steps], "best", "final"]
    if threshold is not None:
        header.append(f"first ≥ {fmt(threshold, percent)}")
    rows = []
    for run, s in zip(runs, summaries):
        rows.append([run.arm, "" if run.seed is None else str(run.seed), fmt(run.initial, percent),
                     *[fmt(run.evals.get(step), percent) for step in steps], fmt(s["best"], percent),
                     fmt(s["final"], percent)] + ([] if threshold is None else [reached_cell(s)]))
    return header, rows


def arm_summaries(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per arm over its runs: means of start, best and final, and which runs reached the threshold, and when."""
    def mean(values: list[float | None]) -> float | None:
        kept = [v for v in values if v is not None]
        return sum(kept) / len(kept) if kept else None

    arms: dict[str, list[dict[str, Any]]] = {}
    for s in summaries:
        arms.setdefault(s["arm"], []).append(s)
    return [{"arm": arm, "runs": len(members), "initial_mean": mean([m["initial"] for m in members]),
             "best_mean": mean([m["best"] for m in members]), "final_mean": mean([m["final"] for m in members]),
             "reached": sum(m["steps_to_threshold"] is not None for m in members),
             "steps_to_threshold": [m["steps_to_threshold"] for m in members]}
            for arm, members in arms.items()]


def arm_rows(arms: list[dict[str, Any]], percent: bool, threshold: float | None) -> tuple[list[str], list[list[str]]]:
    header = ["arm", "runs", "start (mean)", "best (mean)", "final (mean)"]
    if threshold is not None:
        header.append(f"reached {fmt(threshold, percent)}: runs, at steps")
    rows = []
    for a in arms:
        hits = [step_label(s) for s in a["steps_to_threshold"] if s is not None]
        reached = [f"{a['reached']} of {a['runs']}" + (f" ({', '.join(hits)})" if hits else "")]
        rows.append([a["arm"], str(a["runs"]), fmt(a["initial_mean"], percent), fmt(a["best_mean"], percent),
                     fmt(a["final_mean"], percent)] + ([] if threshold is None else reached))
    return header, rows


def differences_rows(differences: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The differences as a table: one row per config key, one column per arm."""
    arms = list(dict.fromkeys(arm for values in differences.values() for arm in values))
    return ["config key", *arms], [[key, *(str(values.get(arm)) for arm in arms)] for key, values in differences.items()]


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def plot_comparison(runs: list[RunCurve], out: Path, metric: str, threshold: float | None) -> Path:
    """One panel per seed when every arm ran the same seeds (at most 4), else one panel with every run."""
    from matplotlib.figure import Figure

    arms = list(dict.fromkeys(r.arm for r in runs))
    seeds_per_arm = [sorted({r.seed for r in runs if r.arm == a}, key=str) for a in arms]
    paired = all(s == seeds_per_arm[0] for s in seeds_per_arm) and 1 < len(seeds_per_arm[0]) <= 4
    panels = seeds_per_arm[0] if paired else [None]
    fig = Figure(figsize=(4.4 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    percent = metric.endswith("success")
    scale = 100.0 if percent else 1.0
    for ax, seed in zip(axes, panels):
        for i, arm in enumerate(arms):
            for run in (r for r in runs if r.arm == arm and (seed is None or r.seed == seed)):
                xs = sorted(run.evals)
                label = arm if (seed is not None or run is next(r for r in runs if r.arm == arm)) else None
                ax.plot([x / 1000 for x in xs], [scale * run.evals[x] for x in xs], marker="o", markersize=3,
                        color=f"C{i % 10}", label=label)
                if run.final is not None:
                    ax.plot([run.final_step / 1000], [scale * run.final], marker="*", markersize=9, color=f"C{i % 10}")
                for step, value in run.confirmed.items():  # the repeats' verdict next to the reading it repeated
                    ax.plot([step / 1000], [scale * value], marker="x", markersize=6, color=f"C{i % 10}")
        if threshold is not None:
            ax.axhline(scale * threshold, color="gray", linestyle=":")
        ax.set_title(f"seed {seed}" if seed is not None else "all runs", fontsize=9)
        ax.set_xlabel("env steps (k)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"{metric} (%)" if percent else metric)
    axes[0].legend(fontsize=7)
    confirmed = any(r.confirmed for r in runs)
    fig.suptitle("stars: final evaluation on fresh episodes" + ("\nx: the confirmed success of a repeated one"
                                                                 if confirmed else ""), fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


def run_compare(patterns: list[str], names: list[str] | None = None, metric: str = "eval/success",
                threshold: float | None = 0.95, budget: int | None = None, columns: list[int] | None = None,
                plot: str | None = "compare.png") -> dict[str, Any]:
    """Load, group and summarize the runs; writes the plot; returns everything the CLI prints."""
    if not patterns:
        raise ConfigError("runs: give at least one run folder or glob, e.g. 'runs=[runs/a-*,runs/b-*]'")
    if plot and Path(plot).suffix.lower() not in PLOT_SUFFIXES:
        raise ConfigError(f"plot: {plot!r} is not an image file name (one of {', '.join(PLOT_SUFFIXES)}); "
                          "plot=null skips the plot")
    groups = find_runs(patterns)
    seen: set[Path] = set()
    runs = []
    for paths, arms in zip(groups, arm_names(groups, list(names or []))):
        for path, arm in zip(paths, arms):
            if path not in seen:  # a run matched by two patterns counts once, in the first arm
                seen.add(path)
                runs.append(load_run(path, arm, metric))
    summaries = [summarize(r, threshold, budget) for r in runs]
    steps = table_steps(runs, list(columns or []), budget)
    header, rows = table_rows(runs, summaries, steps, metric.endswith("success"), threshold)
    arms = arm_summaries(summaries)
    arm_header, arm_table = arm_rows(arms, metric.endswith("success"), threshold)
    result: dict[str, Any] = {"metric": metric, "threshold": threshold, "budget": budget, "runs": summaries,
                              "arms": arms, "differences": arm_differences(runs),
                              "table": {"header": header, "rows": rows},
                              "arm_table": {"header": arm_header, "rows": arm_table}}
    if plot:
        result["plot"] = str(plot_comparison(runs, Path(plot), metric, threshold))
    return result
