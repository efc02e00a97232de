"""PPO throughput and returns: robopolicy vs Stable-Baselines3 on Hopper-v5, same process.

Both use the rl-baselines3-zoo Hopper hyperparameters (n_envs 1, n_steps 512, batch 32,
5 epochs, pi/vf [256, 256] ReLU, log_std_init -2, obs + return normalization) and the same
seeds and torch thread count; they run one after the other in this invocation.

    python benchmarks/ppo_vs_sb3.py --quick     # < 1 minute: throughput only
    python benchmarks/ppo_vs_sb3.py --quick --repeats 5   # ours and SB3 alternated 5 times: median ratio
    python benchmarks/ppo_vs_sb3.py             # 100k steps each: throughput only
    python benchmarks/ppo_vs_sb3.py --full      # 1M steps x 3 seeds each + evaluation return
    python benchmarks/ppo_vs_sb3.py --full --workers 2 --curves runs/ppo-vs-sb3   # keep runs, plot learning curves

Prints (a) training throughput (env steps/s, updates included) of both and their ratio,
(b) the raw simulation rate of the same env without learning and our throughput as a
fraction of it, (c) with --full, mean evaluation return after training. The last line is
one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ENV_ID = "Hopper-v5"
ZOO = {  # rl-baselines3-zoo hyperparams/ppo.yml, Hopper
    "n_steps": 512, "batch_size": 32, "gamma": 0.999, "learning_rate": 9.80828e-05, "ent_coef": 0.00229519, "clip_range": 0.2,
    "n_epochs": 5, "gae_lambda": 0.99, "max_grad_norm": 0.7, "vf_coef": 0.835671,
}


def raw_sim_rate(steps: int, seed: int = 0) -> float:
    """gymnasium env.step with pre-drawn random actions and resets: the ceiling for any learner."""
    import gymnasium as gym

    env = gym.make(ENV_ID)
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).uniform(-1, 1, (steps, *env.action_space.shape)).astype(np.float32)
    t0 = time.perf_counter()
    for a in actions:
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()
    return steps / (time.perf_counter() - t0)


CURVE_EPISODES = 20  # training return = mean of the last 20 finished episodes, as our trainer logs it


def run_ours(steps: int, seed: int, threads: int, eval_episodes: int, keep: str | None = None) -> dict:
    from robopolicy.cli import compose
    from robopolicy.evaluate import evaluate
    from robopolicy.train_run import build_training

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        runs = str(Path(keep) / "ours") if keep else tmp
        cfg = compose("train", ["experiment=hopper_zoo", "logger=none", f"runs_dir={runs}", f"name=ours-{seed}",
                                f"seed={seed}", f"total_steps={steps}", f"torch_threads={threads}",
                                f"checkpoint_every={10 * steps}"])
        session = build_training(cfg)
        t0 = time.perf_counter()
        session.trainer.train(steps, show_progress=False)
        elapsed = time.perf_counter() - t0
        rows = [json.loads(line) for line in (session.run_dir / "metrics.jsonl").read_text().splitlines()]
        collect_s = sum(r["time/collect_s"] for r in rows)
        out = {"steps_per_s": session.trainer.step / elapsed, "steps": session.trainer.step,
               "collect_steps_per_s": session.trainer.step / collect_s, "update_share": 1 - collect_s / elapsed,
               "curve": [(r["step"], r["episode/return"]) for r in rows if "episode/return" in r]}
        if eval_episodes:
            res = evaluate(session.policy, cfg.env, episodes=eval_episodes, seed=10_000 + seed).summary()
            out["eval_return"] = res["return_mean"]
        session.close()
    return out


def run_sb3(steps: int, seed: int, threads: int, eval_episodes: int, keep: str | None = None) -> dict:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(threads)
    # Monitor writes a CSV line per episode only with --curves: without it SB3's timed loop is as before.
    monitor = Path(keep) / f"sb3-seed{seed}" if keep else None
    env = VecNormalize(make_vec_env(ENV_ID, n_envs=1, seed=seed, monitor_dir=monitor and str(monitor)),
                       gamma=ZOO["gamma"])
    model = PPO("MlpPolicy", env, device="cpu", seed=seed, verbose=0, **ZOO,
                policy_kwargs={"log_std_init": -2, "ortho_init": False, "activation_fn": torch.nn.ReLU,
                                   "net_arch": {"pi": [256, 256], "vf": [256, 256]}})
    t0 = time.perf_counter()
    model.learn(steps)
    elapsed = time.perf_counter() - t0
    out = {"steps_per_s": steps / elapsed, "steps": steps, "curve": _monitor_curve(monitor) if monitor else []}
    if eval_episodes:
        eval_env = VecNormalize(make_vec_env(ENV_ID, n_envs=1, seed=10_000 + seed), training=False, norm_reward=False)
        eval_env.obs_rms = env.obs_rms
        mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=eval_episodes, deterministic=True)
        out["eval_return"] = float(mean)
    return out


def _monitor_curve(folder: Path) -> list[tuple[int, float]]:
    """(env step, mean return of the last CURVE_EPISODES episodes) at each episode end of SB3's Monitor CSV."""
    import pandas as pd

    df = pd.concat([pd.read_csv(f, skiprows=1) for f in sorted(folder.glob("*.monitor.csv"))])
    steps, returns = df["l"].cumsum().to_numpy(), df["r"].rolling(CURVE_EPISODES, min_periods=1).mean().to_numpy()
    return [(int(s), float(r)) for s, r in zip(steps, returns, strict=True)]


def plot_curves(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in sorted(results, key=lambda r: (r["who"], r["seed"])):
        if r.get("curve"):
            xs, ys = zip(*r["curve"])
            ax.plot(xs, ys, color="C0" if r["who"] == "ours" else "C1", alpha=0.8, lw=1,
                    label=f"{'robopolicy' if r['who'] == 'ours' else 'SB3'} seed {r['seed']}")
    ax.set_xlabel("env steps")
    ax.set_ylabel(f"training return (last {CURVE_EPISODES} episodes)")
    ax.set_title(f"PPO on {ENV_ID}, rl-zoo hyperparameters")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _job(args: tuple) -> dict:
    which, steps, seed, threads, eval_episodes, keep = args
    fn = run_ours if which == "ours" else run_sb3
    return {"who": which, "seed": seed, **fn(steps, seed, threads, eval_episodes, keep)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="10k steps each, throughput only (< 1 min)")
    mode.add_argument("--full", action="store_true", help="1M steps x 3 seeds each, with evaluation returns")
    parser.add_argument("--steps", type=int, default=None, help="override the env steps per run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both learners")
    parser.add_argument("--repeats", type=int, default=1,
                        help="throughput runs: alternate ours and SB3 this many times (same seed) and report the "
                             "median of the per-pair ratios; a shared or throttled CPU drifts by 10-30%% between runs")
    parser.add_argument("--workers", type=int, default=1, help="--full: runs in parallel processes")
    parser.add_argument("--curves", default=None,
                        help="keep the runs here (ours: run folders; SB3: Monitor CSVs) and plot the learning curves")
    args = parser.parse_args()

    steps = args.steps or (10_240 if args.quick else 1_000_000 if args.full else 100_352)
    seeds = [0, 1, 2] if args.full else [0]
    if args.repeats < 1 or (args.repeats > 1 and (args.full or args.workers > 1)):
        parser.error("--repeats must be >= 1, and 1 with --full (its seeds are the repeats) or --workers > 1 "
                     "(a pair's two runs must run back to back)")
    eval_episodes = 10 if args.full else 0
    raw = raw_sim_rate(20_000 if args.quick else 100_000)
    print(f"raw {ENV_ID} env.step: {raw:,.0f} steps/s")

    jobs = [(who, steps, s, args.threads, eval_episodes, args.curves) for s in seeds for who in ("ours", "sb3")]
    # Repeat pairs alternate who goes first, so a drift in machine speed hits both sides alike.
    for r in range(1, args.repeats):
        jobs += [(who, steps, 0, args.threads, 0, None) for who in (("sb3", "ours") if r % 2 else ("ours", "sb3"))]
    results = []

    def report(r: dict) -> None:
        results.append(r)
        print(f"{r['who']:>4} seed {r['seed']}: {r['steps_per_s']:,.0f} steps/s"
              + (f", eval return {r['eval_return']:.0f}" if "eval_return" in r else ""), flush=True)

    if args.workers > 1:  # one process per run (each single-threaded): seeds in parallel on a big box
        with mp.get_context("spawn").Pool(args.workers) as pool:
            for r in pool.imap_unordered(_job, jobs):
                report(r)
    else:
        for job in jobs:
            report(_job(job))

    def mean(who: str, key: str) -> float:
        return float(np.mean([r[key] for r in results if r["who"] == who]))

    ours_sps, sb3_sps = mean("ours", "steps_per_s"), mean("sb3", "steps_per_s")
    ratio = ours_sps / sb3_sps
    summary = {"env": ENV_ID, "steps": steps, "seeds": seeds, "threads": args.threads}
    if args.repeats > 1:  # results arrive in job order: pair i is (ours, sb3) runs i of each side
        pairs = list(zip((r for r in results if r["who"] == "ours"), (r for r in results if r["who"] == "sb3")))
        ratios = [o["steps_per_s"] / s["steps_per_s"] for o, s in pairs]
        ratio = float(np.median(ratios))
        summary |= {"repeats": args.repeats, "ratios": [round(x, 2) for x in ratios]}
    summary |= {
        "raw_sim_steps_per_s": round(raw), "ours_steps_per_s": round(ours_sps), "sb3_steps_per_s": round(sb3_sps),
        "ratio": round(ratio, 2), "ours_fraction_of_raw": round(ours_sps / raw, 3),
        # where our time goes: acting + simulating alone, and the share spent in PPO updates
        "ours_collect_fraction_of_raw": round(mean("ours", "collect_steps_per_s") / raw, 3),
        "ours_update_share": round(mean("ours", "update_share"), 3),
    }
    if eval_episodes:
        summary |= {
            "ours_eval_return": round(mean("ours", "eval_return"), 1),
            "sb3_eval_return": round(mean("sb3", "eval_return"), 1),
            "ours_eval_returns": [round(r["eval_return"], 1) for r in results if r["who"] == "ours"],
            "sb3_eval_returns": [round(r["eval_return"], 1) for r in results if r["who"] == "sb3"],
        }
    if args.curves:
        plot_curves(results, Path(args.curves) / "learning_curves.png")
        print(f"learning curves: {Path(args.curves) / 'learning_curves.png'}")
    print(f"throughput ratio ours/SB3: {summary['ratio']}x{' (median of pairs)' if args.repeats > 1 else ''} "
          "(goal >= 2.0); "
          f"ours / raw simulation: {summary['ours_fraction_of_raw']} (goal >= 0.5)")
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("MUJOCO_GL", "egl")
    main()
