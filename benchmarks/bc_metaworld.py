"""Behaviour cloning on Meta-World: success of every head on reach, push and pick-place, over seeds.

For each task and seed, scripted-expert demos are recorded as a LeRobotDataset (``robopolicy demos``),
then each head is trained by BC (``robopolicy train algo=bc``) on state observations with chunks of
H = 4, and its EMA weights are evaluated deterministically on ``--eval-episodes`` episodes (seeds
distinct from the demos'). Two demo regimes:

    clean   50 successful scripted demos per task (the heads issue's table, goal >= 90% for diffusion and flow)
    noisy   10 demos with action noise 0.3 and 20% suboptimal episodes, 3k BC steps: the starting
            points that fine-tuning must lift

Runs go two at a time (one torch thread each), results are cached per run in ``--root`` (rerunning
reuses finished cells), and the script prints a head x task table (mean ± std over seeds), writes it
as JSON and a bar plot, and ends with one JSON line.

    python benchmarks/bc_metaworld.py --quick                  # < 1 minute: reach, 2 heads, toy budgets
    python benchmarks/bc_metaworld.py                          # the full table: 4 heads x 3 tasks x 3 seeds x 2 regimes
    python benchmarks/bc_metaworld.py --regimes noisy --heads diffusion flow
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

TASKS = {"reach": "metaworld_reach", "push": "metaworld_push", "pick_place": "metaworld_pick_place"}
# learning rates: flow and diffusion at 1e-4 undertrain (diffusion on reach: 61% vs 91% at 1e-3, 3 seeds)
HEAD_LR = {"diffusion": 1e-3, "flow": 1e-3, "tokens": 1e-3, "gaussian": 1e-4}
# the token transformer over batch 256 x H*A tokens ran at 4.6 updates/s; at 64 it fits the session
HEAD_BATCH = {"tokens": 64}
REGIMES = {
    "clean": {"demos": 50, "action_noise": 0.0, "suboptimal_frac": 0.0, "steps": 6_000},
    "noisy": {"demos": 10, "action_noise": 0.3, "suboptimal_frac": 0.2, "steps": 3_000},
}


def record(task: str, regime: str, seed: int, root: Path, demos: int) -> Path:
    """The regime's demos for (task, seed), recorded once into ``root``."""
    from hydra.utils import instantiate

    from robopolicy.cli import compose
    from robopolicy.demos_config import register_demos_config

    out = root / "data" / f"{task}-{regime}-{seed}"
    if (out / "meta" / "info.json").exists():
        return out
    r = REGIMES[regime]
    register_demos_config()
    cfg = compose("demos", [f"env={TASKS[task]}", f"episodes={demos}", f"root={out}", f"seed={seed}",
                            f"action_noise={r['action_noise']}", f"suboptimal_frac={r['suboptimal_frac']}",
                            "overwrite=true"])
    return Path(instantiate(cfg.recorder))


def train_cell(job: dict) -> dict:
    """One BC run (in a worker process); returns its final evaluation, cached as result.json."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    run_dir = Path(job["root"]) / "runs" / job["name"]
    cached = run_dir / "result.json"
    if cached.exists():
        return json.loads(cached.read_text())
    import warnings

    warnings.filterwarnings("ignore")
    from robopolicy.cli import compose
    from robopolicy.train_run import run_training

    t0 = time.perf_counter()
    cfg = compose("train", [f"env={TASKS[job['task']]}", "env.chunk=4", "algo=bc", f"policy={job['head']}",
                            f"dataset={job['dataset']}", f"seed={job['seed']}", f"algo.steps={job['steps']}",
                            f"algo.learning_rate={job['lr']}", f"algo.warmup_steps={min(500, job['steps'] // 10)}",
                            "algo.eval_every=0", f"eval_episodes={job['eval_episodes']}", "logger=none",
                            f"runs_dir={Path(job['root']) / 'runs'}", f"name={job['name']}", *job["overrides"]])
    result = run_training(cfg, show_progress=False)
    out = {k: job[k] for k in ("task", "head", "regime", "seed", "steps")} | {
        "success": float(result.eval_summary["success_rate"]), "return": float(result.eval_summary["return_mean"]),
        "episodes": job["eval_episodes"], "wall_s": round(time.perf_counter() - t0, 1)}
    cached.write_text(json.dumps(out))
    return out


def table(rows: list[dict], regime: str, heads: list[str], tasks: list[str]) -> tuple[str, dict]:
    """Markdown head x task table of mean ± std success (%) over seeds, and the same as a dict."""
    import numpy as np

    cells, lines = {}, [f"| head | {' | '.join(tasks)} |", "| --- |" + " ---: |" * len(tasks)]
    for head in heads:
        line = []
        for task in tasks:
            s = [r["success"] for r in rows if (r["regime"], r["head"], r["task"]) == (regime, head, task)]
            if not s:
                line.append("-")
                continue
            cells[f"{head}/{task}"] = {"mean": float(np.mean(s)), "std": float(np.std(s)), "seeds": s}
            line.append(f"{100 * np.mean(s):.0f} ± {100 * np.std(s):.0f} (" + ", ".join(f"{100 * x:.0f}" for x in s) + ")")
        lines.append(f"| {head} | {' | '.join(line)} |")
    return "\n".join(lines), cells


def plot(results: dict, path: Path, heads: list[str], tasks: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    regimes = [r for r in results if results[r]]
    fig, axes = plt.subplots(1, len(regimes), figsize=(6 * len(regimes), 3.6), squeeze=False)
    width = 0.8 / len(heads)
    for ax, regime in zip(axes[0], regimes):
        for i, head in enumerate(heads):
            cells = [results[regime].get(f"{head}/{t}") for t in tasks]
            means = [100 * c["mean"] if c else 0 for c in cells]
            stds = [100 * c["std"] if c else 0 for c in cells]
            ax.bar(np.arange(len(tasks)) + i * width, means, width, yerr=stds, capsize=3, label=head)
        ax.axhline(90, color="gray", linestyle=":", linewidth=1)
        ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2, tasks)
        ax.set_ylim(0, 105)
        ax.set_ylabel("success (%)")
        ax.set_title(f"BC, {regime} demos ({REGIMES[regime]['demos']}), mean ± std over seeds")
    axes[0][0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--heads", nargs="+", default=list(HEAD_LR), choices=list(HEAD_LR))
    p.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--eval-episodes", type=int, default=50)
    p.add_argument("--steps", type=int, default=None, help="BC steps for every regime (default: the regime's)")
    p.add_argument("--lr", type=float, default=None, help="BC learning rate for every head (default: HEAD_LR)")
    p.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for every run, e.g. policy.head_options.prediction_type=sample")
    p.add_argument("--tag", default="", help="suffix for run names, so variants do not share the cache")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (one torch thread each)")
    p.add_argument("--root", type=Path, default=Path("runs/bench_bc_metaworld"))
    p.add_argument("--quick", action="store_true", help="reach, diffusion + gaussian, 1 seed, 300 steps, 5 episodes")
    args = p.parse_args()
    if args.quick:
        args.tasks, args.heads, args.regimes, args.seeds = ["reach"], ["diffusion", "gaussian"], ["noisy"], [0]
        args.eval_episodes, args.steps = 5, 300
        args.root = args.root.with_name(args.root.name + "_quick")
    os.environ.setdefault("MUJOCO_GL", "egl")
    t0 = time.perf_counter()
    jobs = []
    for regime in args.regimes:
        for seed in args.seeds:  # seed-major: a first full table appears early
            for task in args.tasks:
                n = 2 if args.quick else REGIMES[regime]["demos"]
                dataset = record(task, regime, seed, args.root, n)
                for head in args.heads:
                    steps, lr = args.steps or REGIMES[regime]["steps"], args.lr or HEAD_LR[head]
                    jobs.append({"task": task, "head": head, "regime": regime, "seed": seed, "steps": steps,
                                 "dataset": str(dataset), "eval_episodes": args.eval_episodes, "root": str(args.root),
                                 "lr": lr, "overrides": ([f"algo.batch_size={HEAD_BATCH[head]}"] if head in HEAD_BATCH else [])
                                 + args.override,
                                 "name": f"{regime}-{task}-{head}-s{seed}-{steps}steps-lr{lr:g}{args.tag}"})
    rows = []
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        for i, row in enumerate(pool.imap_unordered(train_cell, jobs), 1):
            rows.append(row)
            print(f"[{i}/{len(jobs)}] {row['regime']:5s} {row['task']:10s} {row['head']:9s} seed {row['seed']}: "
                  f"success {100 * row['success']:.0f}% ({row['wall_s']:.0f} s)", flush=True)
    results = {}
    for regime in args.regimes:
        md, results[regime] = table(rows, regime, args.heads, args.tasks)
        print(f"\n{regime}: {2 if args.quick else REGIMES[regime]['demos']} demos, {args.steps or REGIMES[regime]['steps']} BC steps, "
              f"success % over {args.eval_episodes} episodes, mean ± std (per seed)\n{md}")
    out_json, out_png = args.root / f"results{args.tag}.json", args.root / f"bc_metaworld{args.tag}.png"
    out_json.write_text(json.dumps({"rows": rows, "table": results}, indent=1))
    plot(results, out_png, args.heads, args.tasks)
    print(f"\nwrote {out_json} and {out_png}")
    summary = {f"{regime}/{cell}": round(v["mean"], 3) for regime, cells in results.items() for cell, v in cells.items()}
    print(json.dumps(summary | {"runs": len(rows), "wall_s": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
