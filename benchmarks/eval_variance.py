"""How much an evaluation's success rate moves from one evaluation seed to the next: Meta-World's own draw of
configurations against ``all_configs`` (each of the task's 50 once), on one checkpoint, the same episodes each.

    python benchmarks/eval_variance.py --ckpt runs/<pick-place run> --repeats 8   # 800 episodes: 45 min, 2 shared cores
    python benchmarks/eval_variance.py --quick     # a 1000-step BC of 3 reach demos, 3 repeats (< 1 minute)

Both evaluations score the same policy in the same env with ``evaluate`` and differ only in how the
configurations are chosen. The spread over ``--repeats`` seeds (standard deviation of the success rate, in
points) is the error one evaluation carries; the ratio says how much of it the draw of configurations is. A
policy whose deterministic action is noise-free scores the same on every sweep (spread 0); a diffusion or flow
chain still draws its starting noise, which is what the sweep's spread is. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("MUJOCO_GL", "egl")


def quick_policy(root: Path) -> Path:
    """A weak reach policy in seconds: 3 scripted demos, a short Gaussian BC."""
    from hydra.utils import instantiate

    from robopolicy.cli import compose
    from robopolicy.demos_config import register_demos_config
    from robopolicy.train_run import run_training

    register_demos_config()
    demos = instantiate(compose("demos", ["env=metaworld_reach", "episodes=3", f"root={root / 'demos'}",
                                          "action_noise=0.3", "overwrite=true"]).recorder)
    bc = run_training(compose("train", ["env=metaworld_reach", "algo=bc", "policy=gaussian", f"dataset={demos}",
                                        "algo.steps=1000", "algo.warmup_steps=10", "algo.eval_every=0", "eval_episodes=0",
                                        "logger=none", f"runs_dir={root}", "name=bc"]), show_progress=False)
    return bc.checkpoint


def spread(policy, env_cfg, seeds: list[int], episodes: int, all_configs: bool) -> list[float]:
    from robopolicy.evaluate import evaluate

    return [evaluate(policy, env_cfg, episodes=episodes, seed=s, all_configs=all_configs).summary()["success_rate"]
            for s in seeds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", help="a run, checkpoint or policy folder trained on a single-task Meta-World env")
    parser.add_argument("--repeats", type=int, default=8, help="evaluation seeds per protocol")
    parser.add_argument("--episodes", type=int, default=50, help="episodes per evaluation (a multiple of 50)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from robopolicy.checkpoint import load_policy, load_run_config, resolve_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            args.ckpt, args.repeats = quick_policy(Path(tmp)), 3
        if args.ckpt is None:
            parser.error("--ckpt is required without --quick")
        ckpt = resolve_checkpoint(args.ckpt)
        run_cfg = load_run_config(ckpt)
        if run_cfg is None:
            parser.error(f"{ckpt} carries no run config: the env to evaluate in is unknown")
        policy = load_policy(ckpt)
        if args.quick:  # shorter episodes: the point is the pipeline, not the figure
            run_cfg.env.max_episode_steps = 30
        seeds = [1000 + 17 * i for i in range(args.repeats)]
        drawn = spread(policy, run_cfg.env, seeds, args.episodes, all_configs=False)
        swept = spread(policy, run_cfg.env, seeds, args.episodes, all_configs=True)
    for name, v in (("drawn", drawn), ("swept", swept)):
        print(f"{name:>6}: " + " ".join(f"{100 * x:.0f}" for x in v) + f"   mean {100 * np.mean(v):.1f}%")
    # on whole episodes, so that identical sweeps give exactly 0 rather than rounding noise
    sd_drawn, sd_swept = (float(np.std(np.round(np.array(v) * args.episodes), ddof=1)) / args.episodes
                          for v in (drawn, swept))
    print(json.dumps({"ckpt": str(ckpt), "episodes": args.episodes, "repeats": args.repeats,
                      "drawn_mean": float(np.mean(drawn)), "drawn_std_points": 100 * sd_drawn,
                      "swept_mean": float(np.mean(swept)), "swept_std_points": 100 * sd_swept,
                      "std_ratio_drawn_over_swept": sd_drawn / sd_swept if sd_swept > 0 else None}))


if __name__ == "__main__":
    main()
