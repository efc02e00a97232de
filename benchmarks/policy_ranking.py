"""Sim-based policy ranking (`robopolicy rank`, VSDR) vs ranking by simulation success alone.

The "real robot" is our arm's pick-place with hidden physics and sensor noise (configs/env/arm_pick_place_real.yaml).
Ten BC candidates of differing quality are trained here, each the real pipeline (`robopolicy demos` ->
`robopolicy train algo=bc`), varying what practitioners vary:

    demos   100 or 30 expert episodes; nominal sim, domain-randomized (full or half scale), or noisy actions
    head    gaussian or diffusion, on state observations (256x256 MLP)
    steps   5000 or 500 gradient steps

Then, in this one run:
    1. `robopolicy demos env=arm_pick_place_real` records a few episodes on the real variant (the fixed real data set)
    2. `robopolicy rank` scores every candidate: success in the nominal sim + OOD score on those episodes
    3. the oracle, never seen by the ranker: each candidate's success on fresh episodes of the real variant
and reports Spearman's rho between the oracle and (a) our ranking, (b) sim success alone, plus the other
combinations / OOD scores of robopolicy/ranking.py and sim success under the default domain randomization.

    MUJOCO_GL=egl python benchmarks/policy_ranking.py --quick     # < 1 minute: the pipeline at toy budgets
    MUJOCO_GL=egl python benchmarks/policy_ranking.py             # the figures in docs/envs.md

Ends with one JSON line: {"spearman_ours", "spearman_sim_only", "n_candidates", ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

BOOTSTRAP = 1000  # redraws of the oracle's success rates for the rho intervals
REUSE = False  # --reuse: datasets and candidates already under --root are kept

# Demo sets: `robopolicy demos` overrides of each (episodes is set per budget).
DATASETS = {
    "nominal": ["env=arm_pick_place"],
    "dr": ["env=arm_pick_place_dr", "env.kwargs.privileged=false"],
    "dr_half": ["env=arm_pick_place_dr", "env.kwargs.privileged=false", "env.kwargs.randomization.scale=0.5"],
    "noisy": ["env=arm_pick_place", "action_noise=0.3"],
}


@dataclass(frozen=True)
class Candidate:
    name: str
    demos: str        # a DATASETS key
    few: bool         # the small demo budget instead of the large one
    head: str         # gaussian | diffusion
    short: bool       # the short training budget instead of the long one


CANDIDATES = [
    Candidate("nom100-gauss", "nominal", False, "gaussian", False),
    Candidate("nom30-gauss", "nominal", True, "gaussian", False),
    Candidate("nom100-gauss-short", "nominal", False, "gaussian", True),
    Candidate("nom100-diff", "nominal", False, "diffusion", False),
    Candidate("noisy100-gauss", "noisy", False, "gaussian", False),
    Candidate("dr100-gauss", "dr", False, "gaussian", False),
    Candidate("dr30-gauss", "dr", True, "gaussian", False),
    Candidate("dr100-gauss-short", "dr", False, "gaussian", True),
    Candidate("dr100-diff", "dr", False, "diffusion", False),
    Candidate("drhalf100-gauss", "dr_half", False, "gaussian", False),
]


@dataclass(frozen=True)
class Budget:
    demos: int
    few_demos: int
    steps: int
    short_steps: int
    real_episodes: int      # recorded once on the real variant (what the ranker sees)
    sim_episodes: int       # per candidate in the sim
    true_episodes: int      # per candidate on the real variant (the oracle)


FULL = Budget(demos=100, few_demos=30, steps=5000, short_steps=500, real_episodes=10, sim_episodes=50,
              true_episodes=100)
QUICK = Budget(demos=3, few_demos=2, steps=40, short_steps=10, real_episodes=2, sim_episodes=2, true_episodes=2)


def record(name: str, overrides: list[str], episodes: int, root: Path, seed: int) -> Path:
    from hydra.utils import instantiate

    from robopolicy.cli import compose
    from robopolicy.demos_config import register_demos_config

    if (root / name / "meta" / "info.json").is_file() and REUSE:
        return root / name
    register_demos_config()
    cfg = compose("demos", [*overrides, f"episodes={episodes}", f"root={root / name}", f"seed={seed}", "overwrite=true"])
    return Path(instantiate(cfg.recorder))


def train(c: Candidate, dataset: Path, steps: int, runs: Path, seed: int, quick: bool) -> Path:
    from robopolicy.checkpoint import resolve_checkpoint
    from robopolicy.cli import compose
    from robopolicy.train_run import run_training

    if (runs / c.name / "checkpoints" / "LATEST").is_file() and REUSE:
        return resolve_checkpoint(runs / c.name)
    cfg = compose("train", ["env=arm_pick_place", "algo=bc", f"policy={c.head}", f"dataset={dataset}",
                            f"algo.steps={steps}", f"algo.warmup_steps={min(200, steps // 5)}", "algo.learning_rate=1e-3",
                            "algo.eval_every=0", "eval_episodes=0", "logger=none", f"runs_dir={runs}", f"name={c.name}",
                            f"seed={seed}"])
    return run_training(cfg, show_progress=not quick).checkpoint


def true_success(ckpt: Path, episodes: int, seed: int, env: str = "arm_pick_place_real") -> float:
    """Success on fresh episodes of the real variant (the oracle; never shown to the ranker)."""
    import numpy as np
    from omegaconf import OmegaConf

    from robopolicy.checkpoint import load_policy
    from robopolicy.cli import config_dir
    from robopolicy.evaluate import evaluate

    env_cfg = OmegaConf.load(config_dir() / "env" / f"{env}.yaml")
    env_cfg.kwargs.privileged = False
    return float(np.mean(evaluate(load_policy(ckpt), env_cfg, episodes=episodes, seed=seed).successes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="toy budgets, < 1 minute")
    parser.add_argument("--root", default="runs/policy_ranking", help="work folder (datasets, runs, rank.json)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true",
                        help="keep the demos and candidates already under --root (re-run only the ranking part)")
    args = parser.parse_args()
    global REUSE
    REUSE = args.reuse
    warnings.filterwarnings("ignore", message=r".*(not within the observation space|maximum and minimum values)")
    warnings.filterwarnings("ignore", message=r"Cannot enable progress bars")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("MUJOCO_GL", "egl")
    import numpy as np
    import torch
    from rich.console import Console
    from rich.table import Table

    from robopolicy.checkpoint import load_policy
    from robopolicy.cli import compose
    from robopolicy.rank_config import register_rank_config
    from robopolicy.rank_run import load_real_episodes, ood_score, print_ranking, run_rank
    from robopolicy.ranking import combine, spearman

    torch.set_num_threads(1)
    console = Console(stderr=True)
    budget = QUICK if args.quick else FULL
    root = Path(args.root) / ("quick" if args.quick else "full")
    if root.exists() and not args.reuse:
        shutil.rmtree(root)
    t0 = time.perf_counter()

    # 1. demos and candidates (the real pipeline, budgets scaled by --quick)
    datasets: dict[tuple[str, bool], Path] = {}
    for c in CANDIDATES:
        key = (c.demos, c.few)
        if key not in datasets:
            n = budget.few_demos if c.few else budget.demos
            datasets[key] = record(f"{c.demos}-{n}", DATASETS[c.demos], n, root / "demos", args.seed)
    ckpts = {c.name: train(c, datasets[(c.demos, c.few)], budget.short_steps if c.short else budget.steps,
                           root / "runs", args.seed, args.quick) for c in CANDIDATES}
    t_train = time.perf_counter() - t0

    # 2. the fixed real data set, recorded once (reset seeds far from every evaluation's)
    real_data = record("real", ["env=arm_pick_place_real"], budget.real_episodes, root / "real", 900_000 + args.seed)

    # 3. `robopolicy rank` with its defaults (validated in the domain-randomized sim, behaviour OOD score, VSDR
    #    filter), and again validated in the nominal sim (env=arm_pick_place), the design this benchmark began with
    register_rank_config()
    names = [c.name for c in CANDIDATES]
    paths = [str(ckpts[n]) for n in names]
    base = [f"candidates=[{','.join(paths)}]", f"names=[{','.join(names)}]", f"real_data={real_data}",
            f"sim_episodes={budget.sim_episodes}"]
    rank_cfg = compose("rank", [*base, f"output={root / 'rank.json'}"])
    t1 = time.perf_counter()
    ranked = run_rank(rank_cfg, show_progress=not args.quick)
    t_rank = time.perf_counter() - t1
    print_ranking(ranked, console)
    ranked_nominal = run_rank(compose("rank", [*base, "env=arm_pick_place", f"output={root / 'rank_nominal_sim.json'}"]),
                              show_progress=not args.quick)
    print_ranking(ranked_nominal, console)

    def column(result: dict, key: str) -> np.ndarray:
        by_name = {r["name"]: r for r in result["candidates"]}
        return np.array([by_name[n][key] for n in names], dtype=np.float64)

    sim, ood, ours, ours_rank = (column(ranked, k) for k in ("sim_success", "ood", "predicted_score", "predicted_rank"))
    sim_nominal, ours_nominal = column(ranked_nominal, "sim_success"), column(ranked_nominal, "predicted_score")

    # 4. the oracle: success on fresh episodes of the real variant (never shown to the ranker)
    truth = np.array([true_success(ckpts[n], budget.true_episodes, 777_000 + args.seed) for n in names])

    # Other scores of robopolicy/ranking.py, from the same sim success values (no new sim episodes).
    real = load_real_episodes(rank_cfg)
    ood_input = np.array([ood_score(load_policy(ckpts[n]), "input", real, 4096) for n in names])
    keep = float(rank_cfg.combine.keep)
    rho = {
        "ours": spearman(ours, truth),                      # robopolicy rank's defaults
        "sim_only": spearman(sim, truth),                   # the same (DR) sim success alone
        "ours_nominal_sim": spearman(ours_nominal, truth),  # validated in the nominal sim instead
        "sim_only_nominal_sim": spearman(sim_nominal, truth),
        "ood_only": spearman(-ood, truth),
        "rank_mean": spearman(combine(sim, ood, "rank_mean"), truth),
        "rank_mean_nominal_sim": spearman(combine(sim_nominal, ood, "rank_mean"), truth),
        "input_ood_filter": spearman(combine(sim, ood_input, "filter", keep), truth),
        "input_ood_only": spearman(-ood_input, truth),
    }
    # How much of a difference in rho is noise: redraw each candidate's true success as Binomial(n, p_i) / n
    # (the oracle's own sampling error) and take the 5th-95th percentile of rho per ranking.
    rng = np.random.default_rng(args.seed)
    scores = {"ours": ours, "sim_only": sim, "ours_nominal_sim": ours_nominal, "sim_only_nominal_sim": sim_nominal}
    redrawn = rng.binomial(budget.true_episodes, truth, size=(BOOTSTRAP, len(names))) / budget.true_episodes
    interval: dict[str, list[float | None]] = {}
    for k, v in scores.items():
        draws = np.array([spearman(v, t) for t in redrawn])
        draws = draws[~np.isnan(draws)]  # a redraw with every candidate at one value has no rho
        interval[k] = [round(float(q), 3) for q in np.percentile(draws, [5, 95])] if len(draws) else [None, None]
    rho = {k: None if np.isnan(v) else round(v, 4) for k, v in rho.items()}  # nan (a constant side) is not JSON
    table = Table(title="candidates: sim success, OOD score, true success on the held-out real variant")
    for col in ("candidate", "sim (DR)", "sim (nominal)", "OOD behaviour", "OOD input", "ours rank", "true success"):
        table.add_column(col, justify="left" if col == "candidate" else "right", no_wrap=col == "candidate")
    for i, n in enumerate(names):
        table.add_row(n, f"{100 * sim[i]:.0f}%", f"{100 * sim_nominal[i]:.0f}%", f"{ood[i]:.4f}",
                      f"{ood_input[i]:.2f}", f"{ours_rank[i]:g}", f"{100 * truth[i]:.0f}%")
    console.print(table)
    summary = Table(title="Spearman rho with true success on the real variant")
    summary.add_column("ranking")
    summary.add_column("rho", justify="right")
    summary.add_column("5-95% (oracle redrawn)", justify="right")
    for k, v in rho.items():
        summary.add_row(k, f"{v:.3f}" if v is not None else "undefined (a constant side)",
                        f"{interval[k][0]:.2f} .. {interval[k][1]:.2f}" if interval.get(k, [None])[0] is not None else "")
    console.print(summary)

    out = {"spearman_ours": rho["ours"], "spearman_sim_only": rho["sim_only"], "n_candidates": len(names),
           "spearman": rho, "spearman_5_95": interval, "quick": args.quick, "real_episodes": budget.real_episodes,
           "sim_episodes": budget.sim_episodes, "true_episodes": budget.true_episodes,
           "candidates": {n: {"sim_dr": float(sim[i]), "sim_nominal": float(sim_nominal[i]),
                              "ood_behaviour": float(ood[i]), "ood_input": float(ood_input[i]),
                              "predicted_rank": float(ours_rank[i]), "true": float(truth[i])}
                          for i, n in enumerate(names)},
           "train_s": round(t_train, 1), "rank_s": round(t_rank, 1), "wall_s": round(time.perf_counter() - t0, 1)}
    (root / "results.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
