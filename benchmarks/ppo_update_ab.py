"""PPO minibatch update, batch-1 acting and rollout collection: this checkout vs a git revision, in ONE
process, alternating.

On a shared or loaded CPU the speed drifts by 1.5x within minutes, so two separate runs cannot be
compared. This script extracts ``--base`` (default HEAD) with ``git archive``, builds the Hopper zoo
session (configs/experiment/hopper_zoo.yaml) from each tree, collects one 512-step rollout each, then
alternates: one epoch of minibatch_epochs (16 minibatches of 32), 200 ``policy.act`` calls and one
512-step ``collect`` (acting + Hopper + the rollout loop, per env step) per side per repeat, timed with
the thread's CPU clock (time spent descheduled is not counted).

    python benchmarks/ppo_update_ab.py --base main --repeats 30
    python benchmarks/ppo_update_ab.py --base ed1456b --quick     # 5 repeats, < 1 minute
The last line is one JSON object with the medians and ratios (base / this checkout).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def build(root: Path):
    """A Hopper zoo session and its minibatch_epochs from the robopolicy package under ``root``."""
    for name in [k for k in sys.modules if k.split(".")[0] in ("robopolicy", "envs")]:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        from robopolicy.algorithms.ppo import minibatch_epochs
        from robopolicy.cli import compose
        from robopolicy.train_run import build_training
    finally:
        sys.path.remove(str(root))
    runs = tempfile.mkdtemp()
    cfg = compose("train", ["experiment=hopper_zoo", "logger=none", f"runs_dir={runs}", "name=ab", "seed=0",
                            "total_steps=1024", "torch_threads=1"])
    session = build_training(cfg)
    torch.set_num_threads(1)
    torch.manual_seed(1)
    batch = session.algo.prepare(session.source.collect(session.policy))
    return session, minibatch_epochs, batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="HEAD", help="git revision to compare against")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="5 repeats (< 1 minute)")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 5
    torch.set_num_threads(1)
    base_dir = Path(tempfile.mkdtemp())
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.base, "robopolicy", "configs", "envs"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(base_dir)], input=archive, check=True)
    sides = {"base": build(base_dir), "this": build(ROOT)}

    def time_minibatch(side: str) -> float:
        session, epochs_fn, batch = sides[side]
        a = session.algo
        t0 = time.thread_time()
        history, _ = epochs_fn(a.objective, session.policy, session.critic, batch, a.optimizer, a.params, a.config, 1)
        return (time.thread_time() - t0) / len(history) * 1e3

    def time_act(side: str, n: int = 200) -> float:
        session = sides[side][0]
        obs = session.source.obs
        with torch.inference_mode():
            t0 = time.thread_time()
            for _ in range(n):
                session.policy.act(obs)
            return (time.thread_time() - t0) / n * 1e6

    rollouts: dict[str, object] = {}

    def time_collect(side: str, r: int) -> float:
        # Same env seed and torch seed on both sides: the same episodes (resets cost time), and
        # rollouts that must be equal where this checkout computes what the base does.
        source, policy = sides[side][0].source, sides[side][0].policy
        source.obs = source.env.reset(seed=1000 + abs(r))
        torch.manual_seed(abs(r))
        t0 = time.thread_time()
        rollouts[side] = source.collect(policy)
        return (time.thread_time() - t0) / rollouts[side].num_steps * 1e6

    def same_rollout(a, b) -> bool:
        fields = ("actions", "trace", "logp", "reward", "terminated", "truncated", "chunk_steps")
        return all(torch.equal(getattr(a, f), getattr(b, f)) for f in fields) and all(
            torch.equal(a.obs[k], b.obs[k]) and torch.equal(a.final_obs[k], b.final_obs[k]) for k in a.obs)

    keys = [f"{s}_{k}" for k in ("mb_ms", "act_us", "collect_us") for s in ("base", "this")]
    times: dict[str, list[float]] = {k: [] for k in keys}
    # Before any update (the updates' shuffles draw from the RNG the acting uses, so weights part ways).
    for side in sides:
        time_collect(side, -1)
    equal = same_rollout(rollouts["base"], rollouts["this"])
    # Where one side acts in NumPy (robopolicy/numpy_actor.py) the products round differently: the first step's
    # samples agree to float32 rounding, and later states part ways as any perturbation does in Hopper.
    first_close = all(torch.allclose(getattr(rollouts["base"], f)[0], getattr(rollouts["this"], f)[0], atol=1e-5)
                      for f in ("actions", "trace", "logp"))
    for r in range(args.repeats):
        for side in ("base", "this") if r % 2 == 0 else ("this", "base"):
            times[f"{side}_mb_ms"].append(time_minibatch(side))
            times[f"{side}_act_us"].append(time_act(side))
            times[f"{side}_collect_us"].append(time_collect(side, r))
    med = {k: round(statistics.median(v), 3) for k, v in times.items()}
    out = {"base": args.base, "repeats": args.repeats, **med, "rollouts_equal": equal, "first_step_close": first_close,
           "minibatch_speedup": round(med["base_mb_ms"] / med["this_mb_ms"], 3),
           "act_speedup": round(med["base_act_us"] / med["this_act_us"], 3),
           "collect_speedup": round(med["base_collect_us"] / med["this_collect_us"], 3)}
    print(f"minibatch: {med['base_mb_ms']:.3f} -> {med['this_mb_ms']:.3f} ms ({out['minibatch_speedup']}x); "
          f"act: {med['base_act_us']:.1f} -> {med['this_act_us']:.1f} us ({out['act_speedup']}x); "
          f"collect: {med['base_collect_us']:.1f} -> {med['this_collect_us']:.1f} us/step ({out['collect_speedup']}x)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
