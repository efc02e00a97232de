"""Fleet learning on Meta-World: 8 simulated robots fine-tune a BC policy, with and without interventions.

One invocation makes its own start and runs every arm from it:

    1. noisy scripted demos (``robopolicy demos``) and a Gaussian BC policy (``robopolicy train algo=bc``)
    2. per arm, a learner (this process) and N robot processes on loopback (fleet.local_fleet, as ``fleet demo``),
       until ``--env-steps`` fleet transitions or ``--seconds`` of wall clock:
         ppo        no interventions: PPO on the robots' own rollouts
         hg_dagger  the scripted teleoperator takes over near failure (after ``--takeover-after`` of the time limit
                    without success); HG-DAgger trains on the intervention segments
         recap      the same interventions; the RECAP-style advantage-conditioned policy (fleet.recap)
    3. every published version the monitor snapshotted is evaluated alone (no teleoperator, the robots' sampling
       policy, ``--eval-episodes`` on one fixed set of seeds never used by the robots), and the final version of each
       arm again on ``--final-episodes`` fresh seeds.

The robots' own success (last 20 episodes, from the learner's metrics.jsonl) is reported too; for intervention arms
it counts an episode only if the policy succeeded before the teleoperator took over ("autonomous").

    python benchmarks/fleet_learning.py --quick           # < 1 minute: the pipeline at toy budgets
    python benchmarks/fleet_learning.py                   # reach-v3, 8 robots, ~8 minutes per arm

Prints a table, writes ``fleet_learning.png`` (success vs env steps and vs wall clock) and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

# (learner train.algo, robot teleoperator). Every arm uses max_policy_lag=1, stale=drop: labels of HG-DAgger and
# RECAP stay valid whichever version acted, but with a larger lag the learner (slower than 8 robots on this box)
# works through an ever older backlog (23 versions behind after 200k steps), while dropping keeps it on fresh data.
ARMS = {"ppo": ("ppo", "none"), "hg_dagger": ("hg_dagger", "scripted"), "recap": ("recap", "scripted")}
# PPO from a BC start: a fresh critic learns for two updates first; KL-bounded steps. lr 1e-4 / clip 0.1 moved the
# policy too little (approx KL 0.003 per update) in the ~15 updates the shared 2-core learner manages in 5 minutes.
PPO_OPTIONS = {"learning_rate": 3e-4, "n_epochs": 4, "batch_size": 1024, "clip_coef": 0.2,
               "critic_warmup_updates": 2, "target_kl": 0.05}


def prepare_bc(task: str, root: Path, demos: int, bc_steps: int, seed: int, eval_episodes: int) -> tuple[Path, float]:
    """Noisy demos and a Gaussian BC policy: (checkpoint, its deterministic success from run_training's eval)."""
    from hydra.utils import instantiate

    from robopolicy.cli import compose
    from robopolicy.demos_config import register_demos_config
    from robopolicy.train_run import run_training

    register_demos_config()
    dcfg = compose("demos", [f"env={task}", f"episodes={demos}", f"root={root / 'demos'}", "action_noise=0.3",
                             "suboptimal_frac=0.2", "stop_on_success=false", f"seed={seed}", "overwrite=true"])
    dataset = Path(instantiate(dcfg.recorder))
    bc = run_training(compose("train", [f"env={task}", "algo=bc", "policy=gaussian", f"seed={seed}",
                                        f"dataset={dataset}", f"algo.steps={bc_steps}", "algo.warmup_steps=100",
                                        "algo.eval_every=0", f"eval_episodes={eval_episodes}", "logger=none",
                                        f"runs_dir={root}", "name=bc"]), show_progress=False)
    return bc.checkpoint, float(bc.eval_summary["success_rate"]) if bc.eval_summary else float("nan")


def run_arm(arm: str, task: str, bc: Path, root: Path, args) -> dict:
    """One fleet run; returns the learner's metric rows and the snapshotted versions [(version, env_steps, wall)]."""
    from fleet.config import DemoConfig, FleetTrainConfig, LearnerConfig
    from fleet.local_fleet import LocalFleet

    algo, teleop = ARMS[arm]
    arm_root = root / arm
    options = dict(PPO_OPTIONS) if algo == "ppo" else {}
    train = FleetTrainConfig(algo=algo, init_policy=str(bc), n_steps=args.n_steps, lanes=args.robots,
                             max_policy_lag=1, stale="drop", algo_options=options, seed=args.seed)
    learner = LearnerConfig(root=str(arm_root / "store"), port=0, tokens_file=str(arm_root / "certs/tokens.json"),
                            cert=str(arm_root / "certs/server.pem"), key=str(arm_root / "certs/server.key"),
                            train=train)
    cfg = DemoConfig(robots=args.robots, root=str(arm_root), env_kwargs={"task": task}, teleop=teleop,
                     robot_overrides=[f"teleop.takeover_after={args.takeover_after}"], learner=learner)
    metrics_path = arm_root / "store" / "train" / "metrics.jsonl"
    fleet = LocalFleet(cfg)
    started = time.monotonic()
    snapshots = [(0, 0, 0.0)]  # version 0 is the BC policy
    try:
        fleet.start()
        while True:
            time.sleep(1.0)
            rows = read_rows(metrics_path)
            steps = rows[-1]["env_steps"] if rows else 0
            if rows and rows[-1]["version"] != snapshots[-1][0] and \
                    steps - snapshots[-1][1] >= args.env_steps / args.snapshots:
                snapshots.append((rows[-1]["version"], steps, time.monotonic() - started))
            if steps >= args.env_steps or time.monotonic() - started >= args.seconds or not fleet.alive():
                break
    finally:
        fleet.stop(drain_s=20.0)
    rows = read_rows(metrics_path)
    if rows and rows[-1]["version"] != snapshots[-1][0]:
        snapshots.append((rows[-1]["version"], rows[-1]["env_steps"], time.monotonic() - started))
    print(f"{arm}: {len(rows)} updates, {rows[-1]['env_steps'] if rows else 0} env steps, "
          f"{time.monotonic() - started:.0f} s", flush=True)
    return {"rows": rows, "snapshots": snapshots, "policies": arm_root / "store" / "policies"}


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def eval_success(policy_dir: Path, task: str, episodes: int, seed: int) -> float:
    """Success of the policy alone (sampling, as on the robots) over ``episodes`` episodes from ``seed``."""
    from omegaconf import OmegaConf

    from robopolicy.checkpoint import load_policy
    from robopolicy.evaluate import evaluate

    env_cfg = OmegaConf.load(Path(__file__).resolve().parent.parent / "configs" / "env" / f"{task}.yaml")
    result = evaluate(load_policy(policy_dir), env_cfg, episodes=episodes, deterministic=False, seed=seed)
    return float(sum(result.successes) / max(1, len(result.successes)))


def plot(results: dict, bc_success: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_s, ax_t) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    colors = {"ppo": "C3", "hg_dagger": "C0", "recap": "C2"}
    for arm, r in results.items():
        label = {"ppo": "PPO, no interventions", "hg_dagger": "HG-DAgger, interventions",
                 "recap": "RECAP, interventions"}[arm]
        steps, wall, succ = zip(*[(c["env_steps"], c["wall_s"] / 60, c["success"]) for c in r["curve"]])
        ax_s.plot(steps, succ, marker="o", color=colors[arm], label=f"{label}: policy alone (eval)")
        ax_t.plot(wall, succ, marker="o", color=colors[arm], label=label)
        robot = [(row["env_steps"], row["episode/autonomous_success"]) for row in r["rows"]
                 if row.get("episode/autonomous_success") is not None]
        if robot:
            ax_s.plot(*zip(*robot), color=colors[arm], alpha=0.35, linewidth=1,
                      label=f"{label}: robots' episodes (autonomous, last 20)")
        for c in r["curve"][1::2]:  # wall clock of every other evaluated version
            ax_s.annotate(f"{c['wall_s'] / 60:.1f} min", (c["env_steps"], c["success"]), fontsize=7,
                          textcoords="offset points", xytext=(0, 6), ha="center", color=colors[arm])
    for ax in (ax_s, ax_t):
        ax.axhline(bc_success, color="gray", linestyle=":", label="BC start")
        ax.axhline(min(1.0, bc_success + 0.3), color="gray", linestyle="--", linewidth=0.8, label="BC + 30 points")
        ax.grid(alpha=0.3)
    ax_s.set_xlabel("fleet env steps (all robots)")
    ax_t.set_xlabel("wall clock (minutes)")
    ax_s.set_ylabel("success rate")
    ax_s.legend(fontsize=7, loc="lower right")
    fig.suptitle("Fleet fine-tuning from BC, 8 simulated robots (Meta-World reach-v3, state obs)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="toy budgets, < 1 minute")
    parser.add_argument("--task", default="metaworld_reach")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--robots", type=int, default=8)
    parser.add_argument("--demos", type=int, default=4, help="noisy scripted demos for the BC start")
    parser.add_argument("--bc-steps", type=int, default=2000)
    parser.add_argument("--env-steps", type=int, default=160_000, help="fleet transitions per arm")
    parser.add_argument("--seconds", type=float, default=480.0, help="wall-clock cap per arm")
    parser.add_argument("--n-steps", type=int, default=512, help="T per lane of one update (x robots lanes)")
    parser.add_argument("--takeover-after", type=float, default=0.5)
    parser.add_argument("--snapshots", type=int, default=8, help="versions evaluated per arm (besides BC)")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--final-episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parallel-arms", action="store_true", help="run the arms at the same time (shares CPU)")
    parser.add_argument("--out", default="runs/bench-fleet-learning")
    parser.add_argument("--plot", default=None, help="also copy the plot here (e.g. docs/img/fleet_learning.png)")
    args = parser.parse_args()
    if args.quick:
        args.robots, args.demos, args.bc_steps, args.env_steps, args.seconds = 1, 1, 100, 400, 20
        args.n_steps, args.snapshots, args.eval_episodes, args.final_episodes = 100, 1, 1, 1
        args.parallel_arms = True
    warnings.filterwarnings("ignore", message=r".*(not within the observation space|maximum and minimum values)")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("MUJOCO_GL", "egl")
    import torch

    torch.set_num_threads(1)
    task = args.task.removeprefix("metaworld_").replace("_", "-") + "-v3"
    root = Path(args.out) / time.strftime("%Y%m%d-%H%M%S")
    t0 = time.perf_counter()
    bc, bc_det = prepare_bc(args.task, root, args.demos, args.bc_steps, args.seed, args.eval_episodes)
    eval_seed, fresh_seed = 900_000, 800_000  # robots use seeds 1000 * i + episode: far from both
    bc_success = eval_success(bc, args.task, args.eval_episodes, eval_seed)
    print(f"BC: success {bc_success:.2f} sampling, {bc_det:.2f} deterministic ({time.perf_counter() - t0:.0f} s)",
          flush=True)
    results = {}
    if args.parallel_arms:  # --quick: robot start-up (imports) dominates, so the arms share it
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(args.arms)) as pool:
            runs = dict(zip(args.arms, pool.map(lambda a: run_arm(a, task, bc, root, args), args.arms)))
    else:
        runs = {}
    for arm in args.arms:
        r = runs[arm] if arm in runs else run_arm(arm, task, bc, root, args)
        r["curve"] = [{"version": 0, "env_steps": 0, "wall_s": 0.0, "success": bc_success}]
        for version, steps, wall in r["snapshots"][1:]:
            r["curve"].append({"version": version, "env_steps": steps, "wall_s": wall,
                               "success": eval_success(r["policies"] / f"v{version}", args.task,
                                                       args.eval_episodes, eval_seed)})
        last = r["snapshots"][-1][0]
        r["final_fresh"] = eval_success(r["policies"] / f"v{last}", args.task, args.final_episodes, fresh_seed)
        target = bc_success + 0.3
        r["steps_to_plus30"] = next((c["env_steps"] for c in r["curve"][1:] if c["success"] >= target), None)
        results[arm] = r
        print(f"  {arm}: eval " + ", ".join(f"{c['success']:.2f}@{c['env_steps']}" for c in r["curve"]) +
              f"; final version v{last} on {args.final_episodes} fresh seeds {r['final_fresh']:.2f}; "
              f"steps to +30: {r['steps_to_plus30']}", flush=True)
    png = root / "fleet_learning.png"
    plot(results, bc_success, png)
    if args.plot:
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        Path(args.plot).write_bytes(png.read_bytes())
    print(f"plot: {png}")
    summary: dict = {"task": task, "robots": args.robots, "bc_success": bc_success, "bc_success_deterministic": bc_det}
    names = {"ppo": "no_intervention", "hg_dagger": "intervention", "recap": "recap"}
    for arm, r in results.items():
        rows = r["rows"]
        summary[f"{names[arm]}_final"] = r["curve"][-1]["success"]
        summary[f"{names[arm]}_final_fresh"] = r["final_fresh"]
        summary[f"{names[arm]}_env_steps"] = rows[-1]["env_steps"] if rows else 0
        summary[f"{names[arm]}_wall_s"] = round(r["snapshots"][-1][2], 1)
        summary[f"{names[arm]}_steps_to_plus30"] = r["steps_to_plus30"]
        summary[f"{names[arm]}_robot_success_last20"] = rows[-1].get("episode/autonomous_success") if rows else None
    # how many times more env steps the no-intervention arm needed; a lower bound when it never got there
    no, budget = results.get("ppo", {}).get("steps_to_plus30"), summary.get("no_intervention_env_steps") or 0
    for arm, key in (("hg_dagger", "steps_to_plus30_ratio"), ("recap", "recap_steps_to_plus30_ratio")):
        yes = results.get(arm, {}).get("steps_to_plus30")
        summary[key] = round((no or budget) / yes, 2) if yes and "ppo" in results else None
        summary[key.replace("ratio", "ratio_is_lower_bound")] = bool(yes and no is None)
    summary["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
