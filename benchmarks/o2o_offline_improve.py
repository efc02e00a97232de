"""Does o2o's offline improvement phase help a BC policy before any env step? Success before vs after.

Takes a finished o2o (or any fine-tuning) run folder whose config names init_policy= and dataset=,
rebuilds its session with ``algo.offline_improve_iters`` set, and scores the BC policy and the
offline-improved one on the same deterministic evaluation episodes (the periodic evaluator's seeds):

    python benchmarks/o2o_offline_improve.py RUN_DIR --episodes 100 algo.offline_improve_iters=3
    python benchmarks/o2o_offline_improve.py --quick     # < 1 minute: toy demos, BC and one round on reach
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

from robopolicy.checkpoint import load_policy
from robopolicy.cli import compose
from robopolicy.evaluate import evaluate
from robopolicy.train_run import build_training


def quick_config(root: Path):
    """2 noisy reach demos and a 100-step BC policy (finetune_vs_baselines' pipeline), and a toy offline phase."""
    spec = importlib.util.spec_from_file_location("finetune_vs_baselines", Path(__file__).with_name("finetune_vs_baselines.py"))
    fvb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fvb)
    dataset, bc, _ = fvb.prepare("metaworld_reach", 0, root, demos=2, bc_steps=100, eval_episodes=0)
    return compose("train", ["env=metaworld_reach", "env.chunk=4", f"init_policy={bc}", f"dataset={dataset}",
                             "algo=o2o", "algo.offline_improve_iters=1", "algo.offline_q_steps=50",
                             "algo.offline_improve_states=32", "algo.offline_improve_samples=2",
                             "algo.offline_q_min_heldout_ev=-1e9"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", nargs="?", help="a fine-tuning run folder (its config names init_policy= and dataset=)")
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="toy demos + BC on reach instead of RUN_DIR, one round")
    ap.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. algo.offline_improve_iters=3")
    args = ap.parse_intermixed_args()
    if args.quick:
        cfg, args.episodes = quick_config(Path(tempfile.mkdtemp())), 2
    elif args.run_dir:
        cfg = OmegaConf.load(f"{args.run_dir}/config.yaml")
    else:
        ap.error("RUN_DIR is required without --quick")
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(
        ["algo.critic_pretrain_steps=0", "logger=none", "resume=null", "name=probe", "eval_every=0",
         f"runs_dir={tempfile.mkdtemp()}", *args.overrides]))

    def score(policy) -> float:
        return evaluate(policy, cfg.env, episodes=args.episodes, seed=20_000).summary()["success_rate"]

    t0 = time.time()
    before = score(load_policy(cfg.init_policy))
    t1 = time.time()
    session = build_training(cfg)
    t2 = time.time()
    after = score(session.policy)
    rows = [json.loads(line) for line in (session.run_dir / "metrics.jsonl").read_text().splitlines()]
    session.close()
    for r in rows:
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()})
    print(json.dumps({"success_before": before, "success_after": after, "offline_s": round(t2 - t1, 1),
                      "eval_s": round(t1 - t0, 1), "overrides": args.overrides}))


if __name__ == "__main__":
    main()
