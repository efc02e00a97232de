"""Fine-tuning a BC policy: our recipes vs naive BC -> PPO, steps to a success threshold.

All methods start from the same BC policy (``--head``: diffusion by default, flow or tokens; chunks of
4, one action per step under ``--recipe tokens``) pretrained on the same 10
noisy scripted demos, and fine-tune it in the same Meta-World task in this one invocation:

    ours    critic warm-up, then small actor steps (experiment=finetune_metaworld)
    o2o     offline critic on the demos' returns, online PPO with bc + anchor terms (algo=o2o)
    naive   BC -> PPO with a fresh critic and PPO's from-scratch defaults (lr 3e-4, clip 0.2, 10 epochs)

Deterministic evaluations (``--eval-episodes`` each) every ``--eval-every`` env steps give the
success curves; the figure is the first step whose evaluation reaches ``--threshold`` (with ``--confirm N``:
whose evaluation and N repeats on other seeds reach it together, ``stop_confirm``). ``--grade`` measures as the
issue-6 grid does: every evaluation a sweep of the task's 50 configurations, ``--confirm 2``. A method that
never reaches it reports the budget and its ratio is a lower bound (">"). Prints a table, writes
one plot of all curves, and ends with one JSON line.

    python benchmarks/finetune_vs_baselines.py --quick      # < 1 minute: the pipeline at toy budgets
    python benchmarks/finetune_vs_baselines.py              # reach-v3, 1 seed, 150k steps per method
    python benchmarks/finetune_vs_baselines.py --seeds 0 1 2 --task metaworld_push --steps 1000000
    python benchmarks/finetune_vs_baselines.py --head flow --methods ours --task metaworld_push
    python benchmarks/finetune_vs_baselines.py --recipe 1m --head flow --methods ours --task metaworld_push \
        --seeds 1 --steps 1000000 --eval-every 64000     # session 17: 95% at 640k
    python benchmarks/finetune_vs_baselines.py --recipe 1m_wide --head flow --methods ours --task metaworld_reach \
        --seeds 0 1 2 --steps 1000000 --eval-every 64000 # session 20: 95% by 320k on all three
    python benchmarks/finetune_vs_baselines.py --grade --recipe 1m_wide --head flow --methods ours \
        --task metaworld_push --seeds 1 --steps 1000000 --eval-every 64000
        # one cell of the issue-6 grid as it is graded (session 35: confirmed at 384k)
    python benchmarks/finetune_vs_baselines.py --recipe tokens --head tokens --methods ours --task metaworld_reach \
        --seeds 0 1 2 --steps 1000000 --eval-every 64000 --override bc:policy.head_options.d_model=128
        # session 25's token recipe from 128-wide BCs (2 of 3 by 1M on the fixed 30; with --grade, session 36: 0 of 3)
    python benchmarks/finetune_vs_baselines.py --recipe tokens --head tokens --methods ours --task metaworld_push \
        --steps 1000000 --eval-every 64000 --override bc:policy.head_options.d_model=128 bc:algo.steps=10000
        # session 26: a chunk-1 BC needs more steps on push (3% at 3,000, 20% at 10,000); its run: 50% best by 1M
    python benchmarks/finetune_vs_baselines.py --task metaworld_pick_place --head flow --seeds 2 --bc-only
        # demos and BC only: the start a variant run pairs with (robopolicy train init_policy=<bc> dataset=<demos>)
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
import warnings
from pathlib import Path

METHODS = {
    "ours": [],  # the --recipe experiment (RECIPES)
    "o2o": ["algo=o2o", "env.num_envs=8"],
    "naive": ["algo=ppo", "env.num_envs=8", "algo.n_steps=50"],
}
HEADS = ("diffusion", "flow", "tokens")
# ``--recipe``: the experiment config of "ours". "1m" is the long-budget recipe of the issue-6 table in docs/finetuning.md.
# "1m_wide" is that recipe with lr 1e-4 and a per-decision clip of 0.2 (sessions 19-20). "tokens" is the token
# head's: one action per policy step at temperature 0.25 (session 25).
RECIPES = {"short": "experiment=finetune_metaworld", "1m": "experiment=finetune_metaworld_1m",
           "1m_wide": "experiment=finetune_metaworld_1m_wide", "tokens": "experiment=finetune_metaworld_tokens"}
# ``--grade``: the measure of the issue-6 grid since session 35 (docs/finetuning.md). Every evaluation sweeps the
# task's 50 reset configurations once, a step counts when its sweep and two repeats on other seeds reach the
# threshold together, and every evaluation leaves a checkpoint, so any reading can be swept again.
GRADE_EPISODES, GRADE_CONFIRM, GRADE_SWEEP = 50, 2, "eval_all_configs=true"


@functools.cache
def recipe_config(recipe: str):
    """The recipe's composed train config: what it sets is read off it, not kept in a second table here."""
    from robopolicy.cli import compose

    return compose("train", [RECIPES[recipe]])


def recipe_chunk(recipe: str) -> int:
    """Env steps per policy step, read off the recipe's config (4, or 1 for tokens). The BC and every method of an
    invocation use it: they share the BC checkpoint, whose chunk init_policy checks against the env's."""
    return int(recipe_config(recipe).env.chunk)


def head_overrides(head: str, recipe: str = "short") -> list[str]:
    """Remove the init_head_options the recipe sets that ``head``'s config has no field for (tokens: ft_steps and
    min_std), read off the head registry so a head that gains an option keeps it (flow gained ft_steps in session 18)."""
    from dataclasses import fields

    from robopolicy.heads import HEADS as HEAD_REGISTRY

    accepted = {f.name for f in fields(HEAD_REGISTRY[head][1])}
    return [f"~init_head_options.{key}" for key in recipe_config(recipe).init_head_options if key not in accepted]


def ours_overrides(head: str, recipe: str) -> list[str]:
    """The recipe's experiment config and the removal of what ``head`` lacks."""
    return [RECIPES[recipe], *head_overrides(head, recipe)]


def head_bc(head: str, lr: float | None = None) -> list[str]:
    """BC of the starting point: the heads benchmark's settings (bc_metaworld: lr 1e-3, token batch 64), the BC
    the issue names. ``lr`` overrides the rate; the push runs of sessions 11-12 used 1e-4 (docs/finetuning_results.md)."""
    from bc_metaworld import HEAD_BATCH, HEAD_LR  # the script's folder is on sys.path

    batch = [f"algo.batch_size={HEAD_BATCH[head]}"] if head in HEAD_BATCH else []
    return [f"algo.learning_rate={lr if lr is not None else HEAD_LR[head]}", *batch]


def prepare(task: str, seed: int, root: Path, demos: int, bc_steps: int, eval_episodes: int,
            head: str = "diffusion", bc_lr: float | None = None, chunk: int = 4,
            bc_overrides: list[str] | None = None) -> tuple[Path, Path, float]:
    """Noisy whole-episode demos and a BC policy with ``head``: (dataset, bc checkpoint, BC success)."""
    from hydra.utils import instantiate

    from robopolicy.cli import compose
    from robopolicy.demos_config import register_demos_config
    from robopolicy.train_run import run_training

    register_demos_config()
    dcfg = compose("demos", [f"env={task}", f"episodes={demos}", f"root={root / f'demos-{seed}'}", "action_noise=0.3",
                             "suboptimal_frac=0.2", "stop_on_success=false", f"seed={seed}", "overwrite=true"])
    dataset = Path(instantiate(dcfg.recorder))
    bc = run_training(compose("train", [f"env={task}", f"env.chunk={chunk}", "algo=bc", f"policy={head}", f"seed={seed}",
                                        f"dataset={dataset}", f"algo.steps={bc_steps}", "algo.warmup_steps=100",
                                        *head_bc(head, bc_lr), *(bc_overrides or []),
                                        "algo.eval_every=0", f"eval_episodes={eval_episodes}", "logger=none",
                                        f"runs_dir={root}", f"name=bc-{seed}"]), show_progress=False)
    return dataset, bc.checkpoint, float(bc.eval_summary["success_rate"]) if bc.eval_summary else float("nan")


def method_overrides(method: str, task: str, seed: int, root: Path, dataset: Path, bc: Path, args) -> list[str]:
    """The train overrides of one method's fine-tuning run from ``bc``; ``--override METHOD:...`` comes last."""
    return [f"env={task}", f"env.chunk={args.chunk}", f"init_policy={bc}", f"dataset={dataset}", f"seed={seed}",
            *METHODS[method], *(ours_overrides(args.head, args.recipe) if method == "ours" else []),
            f"total_steps={args.steps}", f"eval_every={args.eval_every}",
            f"eval_episodes={args.eval_episodes}", f"stop_success={args.threshold}",
            f"stop_confirm={args.confirm}", "logger=none",
            "keep_best=false", f"checkpoint_every={args.eval_every if args.grade else args.steps}",
            f"runs_dir={root}", *([GRADE_SWEEP] if args.grade else []), *args.override.get(method, []),
            f"name={method}-{seed}"]


def finetune(method: str, task: str, seed: int, root: Path, dataset: Path, bc: Path, args) -> dict:
    from robopolicy.cli import compose
    from robopolicy.train_run import run_training

    cfg = compose("train", method_overrides(method, task, seed, root, dataset, bc, args))
    t0 = time.perf_counter()
    result = run_training(cfg, show_progress=not args.quick)
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    curve = [(r["step"], r["eval/success"]) for r in rows if "eval/success" in r and not r.get("eval/is_final")]
    periodic = curve  # [0] is the BC policy at step 0
    # an evaluation that cleared the threshold under --confirm also carries the repeats' verdict
    confirmed = {r["step"]: r["eval/confirmed_success"] for r in rows if "eval/confirmed_success" in r}
    reached = next((s for s, v in periodic[1:] if confirmed.get(s, v) >= args.threshold), None)  # [0]: the BC
    first_online = periodic[1][1] if len(periodic) > 1 else float("nan")
    return {"method": method, "seed": seed, "steps_to_threshold": reached, "wall_s": round(wall, 1),
            "start_success": periodic[0][1] if periodic else float("nan"), "first_eval_success": first_online,
            "min_success": min(v for _, v in periodic) if periodic else float("nan"),
            "final_success": curve[-1][1] if curve else float("nan"), "curve": curve}


def plot(results: list[dict], path: Path, threshold: float, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    colors = {"ours": "C0", "o2o": "C2", "naive": "C3"}
    for r in results:
        xs, ys = zip(*r["curve"]) if r["curve"] else ((), ())
        ax.plot(xs, ys, marker="o", color=colors[r["method"]], alpha=0.8, label=f"{r['method']} (seed {r['seed']})")
    ax.axhline(threshold, color="gray", linestyle=":", label=f"threshold {threshold:.0%}")
    ax.set_xlabel("env steps (0 = BC policy)")
    ax.set_ylabel("eval success")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with what ``--grade``, ``--recipe`` and ``--bc-only`` imply filled in."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="toy budgets, < 1 minute")
    parser.add_argument("--task", default="metaworld_reach")
    parser.add_argument("--head", default="diffusion", choices=HEADS, help="action head of the BC policy")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--bc-lr", type=float, default=None,
                        help="BC learning rate of the starting point (default: bc_metaworld's, 1e-3)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--bc-only", action="store_true",
                        help="record the demos and train the BC of each seed, print their paths and stop: the start "
                             "that a variant run (robopolicy train init_policy=... dataset=...) pairs with")
    parser.add_argument("--steps", type=int, default=150_000)
    parser.add_argument("--eval-every", type=int, default=16_000)
    parser.add_argument("--eval-episodes", type=int, default=None, help="episodes per evaluation (30; 50 with --grade)")
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--confirm", type=int, default=None,
                        help="repeat an evaluation that reaches --threshold this many times on other seeds; the "
                             "step counts only if all of them together reach it (stop_confirm; 0, or 2 with --grade)")
    parser.add_argument("--grade", action="store_true",
                        help="the issue-6 grid's measure: every evaluation (the BC's too) a sweep of the task's 50 "
                             "configurations, --confirm 2, and a checkpoint at every evaluation")
    parser.add_argument("--out", default="runs/bench-finetune")
    parser.add_argument("--recipe", default="short", choices=list(RECIPES),
                        help="ours: finetune_metaworld (short), the 1M-step recipe finetune_metaworld_1m, its "
                             "wider-clip variant finetune_metaworld_1m_wide, or the token head's "
                             "finetune_metaworld_tokens (one action per step: every method and the BC use chunk 1)")
    parser.add_argument("--override", nargs="*", default=[], metavar="METHOD:KEY=VALUE",
                        help="extra Hydra override for one method, e.g. o2o:algo.n_steps=200, or for the BC "
                             "that all start from: bc:policy.head_options.d_model=128")
    args = parser.parse_args(argv)
    overrides: dict[str, list[str]] = {}
    for item in args.override:
        method, sep, kv = item.partition(":")
        if not sep or method not in (*METHODS, "bc"):
            parser.error(f"--override {item!r}: expected METHOD:KEY=VALUE with METHOD in {[*METHODS, 'bc']}")
        overrides.setdefault(method, []).append(kv)
    args.override = overrides
    if args.recipe == "tokens" and args.head != "tokens":
        parser.error(f"--recipe tokens sets a token head's temperature; --head is {args.head!r} (use --head tokens)")
    args.chunk = recipe_chunk(args.recipe)
    if args.grade and args.quick:
        parser.error("--grade sweeps 50 episodes per evaluation; --quick runs 2 (drop one of them)")
    if args.eval_episodes is None:
        args.eval_episodes = GRADE_EPISODES if args.grade else 30
    if args.confirm is None:
        args.confirm = GRADE_CONFIRM if args.grade else 0
    if args.grade:
        args.override.setdefault("bc", []).insert(0, GRADE_SWEEP)  # the start is a sweep too
    if args.bc_only:
        args.methods = []
    return args


def main() -> None:
    args = parse_args()
    demos, bc_steps = 10, 3000
    if args.quick:
        demos, bc_steps, args.steps, args.eval_every, args.eval_episodes = 2, 100, 1600, 1600, 2
    warnings.filterwarnings("ignore", message=r".*(not within the observation space|maximum and minimum values)")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    import torch

    torch.set_num_threads(1)
    root = Path(args.out) / time.strftime("%Y%m%d-%H%M%S")
    results, starts, bcs, datasets = [], {}, [], []
    for seed in args.seeds:
        dataset, bc, starts[seed] = prepare(args.task, seed, root, demos, bc_steps, args.eval_episodes, args.head,
                                            args.bc_lr, args.chunk, args.override.get("bc"))
        print(f"seed {seed}: BC success {starts[seed]:.2f} ({bc})", flush=True)
        bcs.append(str(bc))
        datasets.append(str(dataset))
        for method in args.methods:
            r = finetune(method, args.task, seed, root, dataset, bc, args)
            results.append(r)
            print(f"  {method:6s} steps to {args.threshold:.0%}: {r['steps_to_threshold'] or f'> {args.steps}'}  "
                  f"start {r['start_success']:.2f}  first eval {r['first_eval_success']:.2f}  "
                  f"min {r['min_success']:.2f}  final {r['final_success']:.2f}  ({r['wall_s']:.0f} s)", flush=True)
    if results:
        plot(results, root / "success_curves.png", args.threshold,
             f"{args.task}, {args.head} head from BC on {demos} noisy demos")
        print(f"plot: {root / 'success_curves.png'}")

    def mean_steps(method: str) -> tuple[float, bool]:
        rs = [r for r in results if r["method"] == method]
        steps = [r["steps_to_threshold"] or args.steps for r in rs]
        return sum(steps) / max(1, len(steps)), all(r["steps_to_threshold"] for r in rs)

    summary: dict = {"task": args.task, "head": args.head, "seeds": args.seeds, "threshold": args.threshold,
                     "grade": args.grade, "confirm": args.confirm, "eval_episodes": args.eval_episodes,
                     "budget": args.steps, "bc_success": [starts[s] for s in args.seeds], "bc_checkpoints": bcs,
                     "datasets": datasets}
    for method in args.methods:
        steps, all_reached = mean_steps(method)
        summary[f"{method}_steps_to_threshold"] = steps if all_reached else None
        summary[f"{method}_first_eval_success"] = [r["first_eval_success"] for r in results if r["method"] == method]
    if "naive" in args.methods:
        naive, naive_reached = mean_steps("naive")
        for method in (m for m in args.methods if m != "naive"):
            ours, reached = mean_steps(method)
            if not reached and not naive_reached:  # no ratio to report: both ran out of budget
                summary[f"naive_over_{method}_steps_ratio"] = None
                print(f"naive / {method} steps to {args.threshold:.0%}: neither reached it in {args.steps} steps")
                continue
            # naive / ours: > 1 means fewer steps for ours; a bound when naive never reached it.
            ratio = naive / ours
            summary[f"naive_over_{method}_steps_ratio"] = round(ratio, 2)
            summary[f"naive_over_{method}_is_lower_bound"] = not naive_reached
            print(f"naive / {method} steps to {args.threshold:.0%}: {'>' if not naive_reached else ''}{ratio:.2f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
