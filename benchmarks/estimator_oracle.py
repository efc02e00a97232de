"""How much of a camera student's gap to its privileged teacher is its camera estimate, and in which phase.

The camera student of ``benchmarks/teacher_student_distill.py`` keeps the teacher's layers and feeds them a camera
estimate of the privileged state. This probe evaluates the student on the held-out seeds as it is, and again with
some of its estimates replaced by the simulator's truth before the teacher's layers read them:

    student       as it acts
    all           every estimated entry true (the estimator's ceiling: the teacher's layers with the quaternion
                  and physics parameters at their mean)
    position      only the object's position (privileged 0-2) true
    lifted        the object's position true only while the object is lifted (its centre above LIFTED_Z)
    table         the object's position true only while it is not

The teacher on the same seeds is the reference. Run the teacher-student benchmark first, on the same ``--root``:

    python benchmarks/teacher_student_distill.py --root R --methods --dagger-rounds 3
    python benchmarks/estimator_oracle.py --root R [--student student_dagger_2] [--episodes 100]  # ~1 min a variant
    python benchmarks/estimator_oracle.py --root R --quick    # 2 episodes per variant (any root, e.g. a --quick one)
The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

from teacher_student_distill import HELD_OUT_SEED, POSITION, held_out_success

LIFTED_Z = 0.03  # m: the cube's centre rests at ~0.015 in the recorded frames; 1.5 cm above it is off the table
VARIANTS = ("student", "all", "position", "lifted", "table")


def with_true_estimates(policy, variant: str, task: str) -> None:
    """Make ``policy``'s encoder hand the teacher's layers the truth (observation.privileged, which the env
    records for the estimate's loss) in place of the estimates ``variant`` names. Acting then reads the
    truth; the observation is normalized where the encoder sees it."""
    import torch

    from robopolicy.types import OBS_PRIVILEGED

    encoder = policy.encoder
    if encoder.estimator is None:
        raise SystemExit("not a camera student: its encoder has no estimate_privileged")
    index = encoder.estimate_index.tolist()
    position = [i for i in POSITION[task] if i in index]
    entries = index if variant == "all" else position
    cols, src = [index.index(i) for i in entries], torch.tensor(entries)
    stats = policy.normalizer.stats_for(OBS_PRIVILEGED)
    z_mean, z_std = stats.mean[position[-1]], stats.var[position[-1]].sqrt()  # the object's height, to metres

    def truth_in_place(obs, augment=False):
        estimate = encoder.estimate(obs, augment).clone()  # written in place below
        truth = obs[OBS_PRIVILEGED][:, src]
        if variant in ("lifted", "table"):
            lifted = (obs[OBS_PRIVILEGED][:, position[-1]] * z_std + z_mean > LIFTED_Z).unsqueeze(-1)
            truth = torch.where(lifted if variant == "lifted" else ~lifted, truth, estimate[:, cols])
        estimate[:, cols] = truth
        return encoder.features_from_estimate(obs, estimate), estimate

    encoder.features_and_estimate = truth_in_place


def success(policy_dir: Path, variant: str, episodes: int, seed: int, cameras: list[str], task: str) -> float:
    """Held-out success of the student with ``variant``'s estimates true (the teacher-student benchmark's evaluation)."""
    patch = None if variant == "student" else (lambda policy: with_true_estimates(policy, variant, task))
    return held_out_success(policy_dir, episodes, cameras, task, seed, patch)[0]


def last_student(root: Path) -> str:
    """The last DAgger round's student under ``root`` (the warm start when there is none)."""
    rounds = sorted(root.glob("student_dagger_*/checkpoints/LATEST"), key=lambda p: int(p.parts[-3].split("_")[-1]))
    return rounds[-1].parts[-3] if rounds else "student_init"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="a --root of benchmarks/teacher_student_distill.py")
    parser.add_argument("--student", default=None, help="the student's folder under --root (default: the last round)")
    parser.add_argument("--task", default="pick_place", choices=list(POSITION))
    parser.add_argument("--cameras", nargs="+", default=["front"], choices=["front", "top"])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="first held-out reset seed")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--quick", action="store_true", help="2 episodes per variant")
    args = parser.parse_args()
    if args.quick:
        args.episodes = 2
    warnings.filterwarnings("ignore", message=r".*(not within the observation space|maximum and minimum values)")
    os.environ.setdefault("MUJOCO_GL", "egl")
    import torch

    torch.set_num_threads(1)
    root = Path(args.root)
    student = args.student or last_student(root)
    if not (root / student / "checkpoints" / "LATEST").exists():
        parser.error(f"--student: no checkpoint under {root / student}")
    out = {"task": args.task, "student": student, "episodes": args.episodes, "seed": args.seed}
    t0 = time.perf_counter()
    out["teacher_success"], _ = held_out_success(root / "teacher", args.episodes, [], args.task, args.seed)
    print(f"teacher: {out['teacher_success']:.0%} held-out ({args.episodes} episodes from seed {args.seed})", flush=True)
    for variant in args.variants:
        out[f"{variant}_success"] = success(root / student, variant, args.episodes, args.seed, args.cameras, args.task)
        ratio = out[f"{variant}_success"] / out["teacher_success"] if out["teacher_success"] else float("nan")
        what = "as it acts" if variant == "student" else f"{variant} estimates true"
        print(f"{student}, {what}: {out[f'{variant}_success']:.0%} ({ratio:.3f} of the teacher)", flush=True)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
