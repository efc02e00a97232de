"""Which cameras the camera student's state estimator needs: its error per axis with the front camera alone vs
front + top, on held-out expert frames of our arm's pick-place under the default randomization.

The camera student of ``benchmarks/teacher_student_distill.py`` sees the cube through the front camera; after
three DAgger rounds its position error along x (the front camera's depth axis) was twice that along y and z
(docs/finetuning_results.md). This probe trains the estimator alone (``algo.imitation_coef=0``: the estimate term on
observation.privileged, the teacher's layers are not involved) on the same expert frames with each camera set,
the same seed and steps, and reports the median absolute error per axis on frames of other reset seeds: the
expert's own (in distribution) and DART frames (noise of std 0.3 on the executed action: the off-path states a
student drifts into, where the student's estimate went wrong). The reference peer is the estimator reading the
front camera only, as the student does now.

    python benchmarks/camera_estimator.py --quick      # 6 + 3 episodes, 30 steps: the pipeline, < 1 minute
    python benchmarks/camera_estimator.py              # 300 + 50 episodes, 3,000 BC steps per camera set
The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from teacher_student_distill import ENV, ESTIMATED, record_arm_demos

CAMERA_SETS = {"front": ["front"], "front_top": ["front", "top"]}
DART_NOISE = 0.3  # as the student's DART demos


def train(name: str, cams: list[str], data: list[Path], runs: Path, steps: int, seed: int, quiet: bool) -> Path:
    from robopolicy.cli import compose
    from robopolicy.train_run import run_training

    cameras = "[" + ",".join(cams) + "]"
    cfg = compose("train", [*ENV, f"env.kwargs.cameras={cameras}", "policy=gaussian", "algo=bc",
                            "dataset=[" + ",".join(map(str, data)) + "]",
                            f"policy.encoder.image.cameras={cameras}", "policy.encoder.image.backbone=cnn",
                            "policy.encoder.image.random_shift=0", f"policy.encoder.estimate_privileged={ESTIMATED}",
                            "algo.imitation_coef=0", "algo.batch_size=64", "algo.learning_rate=1e-3",
                            f"algo.steps={steps}", "algo.eval_every=0", "eval_episodes=0", f"seed={seed}",
                            f"runs_dir={runs}", f"name={name}", "logger=none"])
    return run_training(cfg, show_progress=not quiet).run_dir


def axis_errors_cm(run_dir: Path, data: Path) -> dict[str, float]:
    """Median |estimate - truth| of the cube's x, y, z (cm) over every frame of ``data``."""
    import torch

    from robopolicy.checkpoint import load_policy
    from robopolicy.data.demos import load_demos
    from robopolicy.types import OBS_PRIVILEGED

    policy = load_policy(str(run_dir)).eval()
    demos = load_demos(data)
    index = policy.encoder.estimate_index.tolist()
    cols = [index.index(i) for i in range(3)]  # privileged 0-2: the cube's xyz
    std = policy.normalizer.stats_for(OBS_PRIVILEGED).var[:3].sqrt()
    errors = []
    with torch.no_grad():
        for start in range(0, len(demos), 512):
            obs = policy.normalizer({k: v[start:start + 512] for k, v in demos.obs.items()})
            _, estimate = policy.encoder.features_and_estimate(obs)
            errors.append(((estimate[:, cols] - obs[OBS_PRIVILEGED][:, :3]) * std).abs())
    median = torch.cat(errors).median(dim=0).values * 100
    return {axis: round(float(v), 2) for axis, v in zip("xyz", median, strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="toy budgets (< 1 minute)")
    parser.add_argument("--episodes", type=int, default=300, help="training episodes (expert, both cameras)")
    parser.add_argument("--train-dart", type=int, default=0,
                        help="DART episodes added to the training data (as the student's demos mix them in)")
    parser.add_argument("--held-out", type=int, default=50, help="held-out episodes (reset seeds from 50,000)")
    parser.add_argument("--steps", type=int, default=3_000, help="BC steps per camera set")
    parser.add_argument("--workers", type=int, default=2, help="recording processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=None, help="keep data and runs here (default: a temporary folder)")
    args = parser.parse_args()
    if args.quick:
        args.episodes, args.held_out, args.steps, args.workers = 6, 3, 30, 1
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    import torch

    from robopolicy.data.demos import quiet_lerobot_video_probe

    quiet_lerobot_video_probe()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root) if args.root else Path(tmp)
        train_data = [root / "train"] + ([root / "train_dart"] if args.train_dart else [])
        held_out = {"expert": root / "held_out", "dart": root / "held_out_dart"}
        for path, episodes, seed, noise in [(train_data[0], args.episodes, args.seed + 1_000, 0.0),
                                            (root / "train_dart", args.train_dart, args.seed + 10_000, DART_NOISE),
                                            (held_out["expert"], args.held_out, 50_000, 0.0),
                                            (held_out["dart"], args.held_out, 50_000, DART_NOISE)]:
            if episodes and not (path / "meta" / "info.json").exists():
                record_arm_demos(path, episodes, seed, [f"explore_noise={noise}", "recorder.progress=false"],
                                 args.workers, ["front", "top"])
        out: dict = {"episodes": args.episodes, "train_dart": args.train_dart, "held_out_episodes": args.held_out,
                     "steps": args.steps}
        for name, cams in CAMERA_SETS.items():
            t0 = time.perf_counter()
            run = root / "runs" / name
            if not (run / "checkpoints" / "LATEST").exists():
                run = train(name, cams, train_data, root / "runs", args.steps, args.seed, args.quick)
            for frames, data in held_out.items():
                err = axis_errors_cm(run, data)
                out[f"{name}_{frames}_error_cm"] = err
                print(f"{name:>10}, {frames:>6} frames: median |error| x {err['x']:.2f}  y {err['y']:.2f}  "
                      f"z {err['z']:.2f} cm", flush=True)
            out[f"{name}_s"] = round(time.perf_counter() - t0, 1)
        for frames in held_out:
            front, both = out[f"front_{frames}_error_cm"], out[f"front_top_{frames}_error_cm"]
            out[f"{frames}_x_error_ratio"] = round(front["x"] / both["x"], 2) if both["x"] > 0 else None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
