"""Teacher-student on our arm under domain randomization (pick-place; --task push or reach): a privileged-state
teacher distilled into a camera student, three ways at equal env steps.

    demos     the scripted expert under the default randomization: proprioception (19-D), observation.privileged
              (object pose, contacts, physics parameters) and the front camera (84x84)
    teacher   BC diffusion policy on [proprioception, privileged] (encoder.privileged=true)
    student demos  2,000 more expert episodes plus 1,000 DART episodes (noise on the executed action, the expert's
              clean action as the label: off-path states), on other reset seeds, loaded together with them
              (dataset=[...]: concatenated as LeRobot's aggregate_datasets would merge them, without writing the
              copy); the camera estimator overfits the teacher's 200
    student   the teacher's layers reading [proprioception, camera estimate of the privileged state]
              (policy.encoder.estimate_privileged: a CNN on the front camera + proprioception estimates the object's
              pose, velocity, contacts and the goal; the physics parameters stay at their mean). Warm start: the
              teacher's weights copied, then BC on the student demos' images training only the estimator
              (algo.freeze) on the estimate term alone (algo.imitation_coef=0: the frozen layers cannot fit the DART
              frames' labels, and the action gradient would bend the estimate to make them). The estimator has a
              linear path from the proprioception (encoder.estimator_skip: a grasped cube is where the gripper is).
    DAgger    offline DAgger for the estimator (--dagger-rounds): the student drives 1,000 episodes on fresh seeds,
              the frames join its data, BC on the estimate continues; on expert frames alone the estimator is
              precise (0.8 cm) but not along the student's own trajectories (5 cm).
One init shared by every method, then per method, at the same env-step budget (every method keeps the estimate
term on the rollout's privileged state):
        on_policy   algo=distill: the student acts, reverse KL to the teacher per denoising step on its own chains
        dagger      the student acts, the teacher's chunk on the student's states is the label
        bc_teacher  the teacher acts (its data, with images), the student imitates it (BC on teacher data)
        estimate_only  the student acts, the estimate term alone (online DAgger for the estimator)

Every policy is then evaluated on the same held-out randomization seeds (reset seeds from 50,000, which no
training or in-run evaluation used). The figure is student success / teacher success. Prints a table, writes a
plot of the in-run success curves, and ends with one JSON line.

    python benchmarks/teacher_student_distill.py --quick     # < 1 minute: the pipeline at toy budgets
    python benchmarks/teacher_student_distill.py             # 200 demos, 40k env steps per method
    python benchmarks/teacher_student_distill.py --root runs/bench-ts/<stamp> --methods dagger   # reuse a teacher
    python benchmarks/teacher_student_distill.py --root <root> --methods --dagger-rounds 2   # the warm starts alone
    python benchmarks/teacher_student_distill.py --cameras front top     # a student with two cameras
    python benchmarks/teacher_student_distill.py --task reach             # our arm's reach (the goal from the camera)
    python benchmarks/teacher_student_distill.py --task reach --init teacher --estimate-coef 0   # the methods alone
              train a fresh estimator, through their action-level term only (docs/finetuning_results.md)
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

# --task: our arm's task under the default randomization (envs/randomization.py's ranges at full scale)
DR = ["env.kwargs.randomization.enabled=true"]
TASK_ENVS = {"pick_place": ["env=arm_pick_place_dr"], "push": ["env=arm_push", *DR], "reach": ["env=arm_reach", *DR]}
SHARED = ["env.chunk=4", "env.kwargs.state=proprio", "env.kwargs.privileged=true"]
ENV = [*TASK_ENVS["pick_place"], *SHARED]
# Object position, velocity, goal and contacts (privileged 0-2, 7-15); the quaternion (3-6) and the physics
# parameters (16-21) stay at their mean. Teacher on held-out seeds: 92% with the quaternion blanked (= clean), 96%
# with the physics blanked, 0% with only position and goal real. The quaternion's spread in the teacher's demos
# is ~1e-3, so a tilted cube (a third of the DART frames) sits at the normalizer's clip: estimating it spent the
# estimator on four saturated numbers the teacher does not need.
ESTIMATED = "[0,1,2," + ",".join(str(i) for i in range(7, 16)) + "]"

# Every method keeps the teacher's layers fixed (algo.freeze) and the estimate term on the rollout's privileged
# state: what it adds is where the estimator's data comes from and which action-level term reaches it.
FROZEN = ["algo.freeze=[head,encoder.net]"]
# BC of the estimator alone (warm start and DAgger rounds): teacher layers frozen, the estimate term only.
ESTIMATOR_BC = [*FROZEN, "algo.imitation_coef=0", "algo.batch_size=64", "algo.warmup_steps=200"]
METHODS = {
    "on_policy": ["algo.distill_kind=reverse_kl", *FROZEN],
    "dagger": ["algo.distill_kind=dagger", *FROZEN],
    "bc_teacher": ["algo.distill_kind=dagger", "algo.act_with=teacher", *FROZEN],
    # the estimate term alone on the student's own rollouts: DAgger for the state estimate
    "estimate_only": ["algo.distill_coef=0", *FROZEN],
}
HELD_OUT_SEED = 50_000
# The position whose estimate error is reported: the object's (privileged 0-2), the goal's for reach (10-12).
POSITION = {"pick_place": [0, 1, 2], "push": [0, 1, 2], "reach": [10, 11, 12]}
POSITION_NAME = {"pick_place": "object", "push": "object", "reach": "goal"}


def env_overrides(task: str) -> list[str]:
    """The teacher's and student's env: ``task`` randomized, chunks of 4, proprioception + the privileged state."""
    return [*TASK_ENVS[task], *SHARED]


def camera_overrides(cams: list[str]) -> list[str]:
    """The env renders these cameras (--cameras; the front one by default)."""
    return [f"env.kwargs.cameras=[{','.join(cams)}]"]


def student_overrides(cams: list[str]) -> list[str]:
    """The camera student's policy reading ``cams``, and the env rendering them. random_shift=0: a shifted frame
    moves the cube, and the estimate is of the cube's absolute position."""
    return [*camera_overrides(cams), "policy=diffusion", f"policy.encoder.image.cameras=[{','.join(cams)}]",
            "policy.encoder.image.shape=[3,84,84]", "policy.encoder.image.backbone=cnn",
            "policy.encoder.image.random_shift=0", f"policy.encoder.estimate_privileged={ESTIMATED}",
            "policy.encoder.estimator_skip=true"]


def _train(overrides: list[str], quiet: bool):
    import torch

    from robopolicy.cli import compose
    from robopolicy.train_run import run_training

    threads, t0 = torch.get_num_threads(), time.perf_counter()
    result = run_training(compose("train", [*overrides, "logger=none"]), show_progress=not quiet)
    torch.set_num_threads(threads)  # a run's torch_threads must not leak into the evaluations after it
    return result, time.perf_counter() - t0


def prepare(root: Path, args) -> dict:
    """Demos, teacher and the student's BC warm start; each is reused when its folder already exists."""
    out: dict = {}
    dataset = root / "demos"
    if not (dataset / "meta" / "info.json").exists():
        t0 = time.perf_counter()
        record_arm_demos(dataset, args.demos, args.seed, [], args.record_workers, args.cameras, args.task)
        out["demos_s"] = round(time.perf_counter() - t0, 1)
    out["dataset"] = dataset
    stages = {"teacher": ["policy=diffusion", "policy.encoder.privileged=true", f"algo.steps={args.teacher_steps}"]}
    student = [*student_overrides(args.cameras), *ESTIMATOR_BC, f"init_policy={root / 'teacher'}"]
    if args.init == "warm":
        data = {"teacher": [dataset], "student_init": _student_demos(root, dataset, args, out)}
        stages["student_init"] = [*student, f"algo.steps={args.student_steps}", "algo.learning_rate=1e-3"]
    else:  # the teacher's layers and a fresh estimator, saved as a policy: one BC step at lr 0 copies them
        data = {"teacher": [dataset], "student_fresh": [dataset]}
        stages["student_fresh"] = [*student, "algo.steps=1", "algo.learning_rate=0"]
    for name, overrides in stages.items():
        ckpt = root / name / "checkpoints" / "LATEST"
        if not ckpt.exists():
            _, wall = _train([*env_overrides(args.task), *overrides, "algo=bc", _dataset(data[name]),
                              f"seed={args.seed}", "algo.eval_every=0", "eval_episodes=0", f"runs_dir={root}",
                              f"name={name}"], args.quick)
            out[f"{name}_s"] = round(wall, 1)
        out[name] = root / name
    if args.init == "teacher":  # the methods start from the teacher's layers and a fresh camera estimator
        out.update(student_bc=out["student_fresh"], student_init=out["student_fresh"], dagger_env_steps=0,
                   dagger_students=[])
        return out
    out["student_bc"] = out["student_init"]
    out["student_init"] = _estimator_dagger(root, out["student_bc"], data["student_init"], args, out)
    return out


def _estimator_dagger(root: Path, student: Path, data: list[Path], args, out: dict) -> Path:
    """DAgger for the camera estimator, offline: each round the current student drives ``dagger_episodes`` episodes
    on fresh reset seeds (``robopolicy demos driver=...``: its own frames, each with the privileged state the
    estimate learns), they join the data (the folders load together), and BC continues from the student on the
    estimate term alone. Online, on a few hundred of its latest steps, the estimator drifted toward the failure states;
    aggregated with everything before, it keeps the demo frames. Returns the last round's student."""
    out["dagger_env_steps"], out["dagger_students"] = 0, []
    for k in range(1, args.dagger_rounds + 1):
        name = f"student_dagger_{k}"
        rollouts = root / f"student_rollouts_{k}"
        t0 = time.perf_counter()
        if not (rollouts / "meta" / "info.json").exists():
            record_arm_demos(rollouts, args.dagger_episodes, args.seed + 20_000 + (k - 1) * args.dagger_episodes,
                    [f"driver={student}"], args.record_workers, args.cameras, args.task)
        out["dagger_env_steps"] += json.loads((rollouts / "meta" / "info.json").read_text())["total_frames"]
        data = [*data, rollouts]
        if not (root / name / "checkpoints" / "LATEST").exists():
            _train([*env_overrides(args.task), *student_overrides(args.cameras), *ESTIMATOR_BC, "algo=bc",
                    _dataset(data), f"init_policy={student}", f"algo.steps={args.dagger_steps}",
                    f"algo.learning_rate={args.dagger_lr}", f"seed={args.seed}", "algo.eval_every=0", "eval_episodes=0",
                    f"runs_dir={root}", f"name={name}",
                    f"torch_threads={args.bc_threads}"], args.quick)
            out[f"{name}_s"] = round(time.perf_counter() - t0, 1)
        student = root / name
        out["dagger_students"].append(student)
    return student


def _dataset(parts: list[Path]) -> str:
    """The ``dataset=`` override for several LeRobotDataset folders, loaded one after another."""
    return "dataset=[" + ",".join(str(p) for p in parts) + "]"


def record_arm_demos(root: Path, episodes: int, seed: int, extra: list[str], workers: int, cams: list[str],
                     task: str = "pick_place") -> None:
    """``robopolicy demos`` on the randomized ``task`` with proprioception, the privileged state and ``cams``
    (also the recorder of benchmarks/camera_estimator.py and benchmarks/demo_pipeline.py)."""
    from hydra.utils import instantiate

    from robopolicy.cli import compose
    from robopolicy.demos_config import register_demos_config

    register_demos_config()
    instantiate(compose("demos", [*TASK_ENVS[task], "env.kwargs.state=proprio", "env.kwargs.privileged=true",
                                  *camera_overrides(cams), f"episodes={episodes}", f"root={root}", f"seed={seed}",
                                  "overwrite=true", f"workers={workers}", *extra]).recorder)


def _student_demos(root: Path, teacher_demos: Path, args, out: dict) -> list[Path]:
    """The student's BC data: clean expert episodes plus DART episodes (noise executed, the expert's label kept),
    loaded together. 200 episodes let the camera estimator memorize them (0.8 cm on its training frames, 3 cm median
    and a heavy tail on held-out seeds); with these 3,000 it is precise on unseen expert frames (0.76 cm), though not
    yet along the policies' own trajectories (docs/finetuning_results.md)."""
    if args.student_demos == 0:
        return [teacher_demos]
    t0 = time.perf_counter()
    dart = [f"explore_noise={args.explore_noise}"]
    parts = [(root / "student_demos_clean", args.student_demos, args.seed + 1_000, []),
             (root / "student_demos_dart", args.dart_demos, args.seed + 10_000, dart)]
    parts = [p for p in parts if p[1] > 0]
    for path, episodes, seed, extra in parts:
        if not (path / "meta" / "info.json").exists():
            record_arm_demos(path, episodes, seed, extra, args.record_workers, args.cameras, args.task)
    out["student_demos_s"] = round(time.perf_counter() - t0, 1)
    return [p[0] for p in parts]


def run_suffix(args) -> str:
    """Run names for a start or an estimate weight other than the defaults, so that they share a --root."""
    return ("" if args.init == "warm" else "_from_teacher") + ("" if args.estimate_coef == 1 else
                                                               f"_estimate{args.estimate_coef:g}")


def distill(method: str, root: Path, prep: dict, args) -> dict:
    name = method + run_suffix(args)
    result, wall = _train([*env_overrides(args.task), *student_overrides(args.cameras), "algo=distill",
                           *METHODS[method], f"teacher={prep['teacher']}", f"init_policy={prep['student_init']}",
                           f"seed={args.seed}",
                           "env.num_envs=8", f"algo.n_steps={args.n_steps}", "algo.batch_size=128",
                           f"algo.n_epochs={args.epochs}", f"algo.learning_rate={args.lr}",
                           f"algo.estimate_coef={args.estimate_coef}", f"total_steps={args.steps}",
                           f"eval_every={args.eval_every}", f"eval_episodes={args.eval_episodes}", "keep_best=false",
                           f"checkpoint_every={args.steps}", f"runs_dir={root}", f"name={name}"], args.quick)
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    curve = [(r["step"], r["eval/success"]) for r in rows if "eval/success" in r and not r.get("eval/is_final")]
    return {"method": method, "run": str(result.run_dir), "checkpoint": str(result.checkpoint / "policy"),
            "wall_s": round(wall, 1), "env_steps": args.steps, "curve": curve}


def held_out_success(policy_dir: Path, episodes: int, cameras: list[str], task: str, seed: int = HELD_OUT_SEED,
                     patch=None) -> tuple[float, float | None]:
    """Success on the held-out seeds (``episodes`` reset seeds from ``seed`` on) and, for a camera student, the
    median error (cm) of its estimate of the object's position (the goal's for reach) along its own episodes (None
    for the teacher). ``patch(policy)``, if given, changes the loaded policy first (benchmarks/estimator_oracle.py)."""
    import torch
    from omegaconf import OmegaConf

    from robopolicy.checkpoint import load_policy
    from robopolicy.cli import compose
    from robopolicy.evaluate import evaluate
    from robopolicy.types import OBS_PRIVILEGED

    policy = load_policy(str(policy_dir))
    if patch is not None:
        patch(policy)
    encoder, errors = policy.encoder, []
    if cameras and encoder.estimator is not None:
        index = encoder.estimate_index.tolist()
        position = [i for i in POSITION[task] if i in index]  # the object's xyz (the goal's for reach)
        cols = [index.index(i) for i in position]  # their columns of the estimate
        std = policy.normalizer.stats_for(OBS_PRIVILEGED).var[position].sqrt()
        estimate_fn = encoder.features_and_estimate

        def recorded(obs, augment=False):  # obs is normalized here; the error is taken back to metres
            features, estimate = estimate_fn(obs, augment)
            errors.append(((estimate[:, cols] - obs[OBS_PRIVILEGED][:, position]) * std).norm(dim=-1).detach())
            return features, estimate

        encoder.features_and_estimate = recorded
    env = compose("train", [*env_overrides(task), *(camera_overrides(cameras) if cameras else [])]).env
    result = evaluate(policy, OmegaConf.to_container(env, resolve=True), episodes=episodes, seed=seed)
    error_cm = round(100 * torch.cat(errors).median().item(), 2) if errors else None
    return float(result.summary()["success_rate"]), error_cm


def plot(results: list[dict], teacher: float, path: Path, task: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in results:
        if r["curve"]:
            xs, ys = zip(*r["curve"])
            ax.plot(xs, ys, marker="o", label=f"{r['method']} (held-out {r['held_out_success']:.0%})")
    ax.axhline(teacher, color="k", linestyle="--", label=f"teacher (held-out {teacher:.0%})")
    ax.axhline(0.9 * teacher, color="gray", linestyle=":", label="90% of the teacher")
    ax.set_xlabel("env steps (0 = the methods' start: the warm start, or the teacher with a fresh estimator)")
    ax.set_ylabel("success (in-run evaluation)")
    ax.set_title(f"arm {task}, randomized: privileged teacher -> camera student")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_rounds(rounds: list[tuple[float, float | None]], teacher: float, path: Path, task: str) -> Path:
    """Held-out success and position error of the student after each offline DAgger round (0 = BC warm start)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = list(range(len(rounds)))
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    left.plot(xs, [r[0] for r in rounds], marker="o", label="camera student")
    left.axhline(teacher, color="k", linestyle="--", label=f"teacher ({teacher:.0%})")
    for share, style in ((0.85, ":"), (0.9, "-.")):
        left.axhline(share * teacher, color="gray", linestyle=style, label=f"{share:.0%} of the teacher")
    left.set_ylabel("held-out success")
    left.set_ylim(0, 1.02)
    right.plot(xs, [r[1] for r in rounds], marker="o", color="tab:red")
    right.set_ylabel("median object-position error (cm)\nalong its own episodes")
    for ax in (left, right):
        ax.set_xlabel("offline DAgger round (0 = BC warm start)")
        ax.set_xticks(xs)
        ax.grid(alpha=0.3)
    left.legend(fontsize=7)
    fig.suptitle(f"arm {task}, randomized: the camera student's estimator on its own trajectories")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="toy budgets, < 1 minute")
    parser.add_argument("--root", default=None, help="reuse this folder (demos, teacher, student_init)")
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS),
                        help="on-policy methods from the start --init picks (none: the warm starts alone)")
    parser.add_argument("--task", default="pick_place", choices=list(TASK_ENVS), help="our arm's task (randomized)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--demos", type=int, default=200)
    parser.add_argument("--teacher-steps", type=int, default=20_000)
    parser.add_argument("--student-demos", type=int, default=2_000,
                        help="clean expert episodes for the student's BC (0: reuse the teacher's demos)")
    parser.add_argument("--dart-demos", type=int, default=1_000, help="DART episodes for the student's BC")
    parser.add_argument("--explore-noise", type=float, default=0.3, help="DART: std of the executed action noise")
    parser.add_argument("--init", default="warm", choices=["warm", "teacher"],
                        help="the methods' start: the BC warm start (+ DAgger rounds), or the teacher's layers with a "
                             "fresh estimator (no student demos: the methods alone train it)")
    parser.add_argument("--estimate-coef", type=float, default=1.0,
                        help="weight of the estimate term in the methods (0: only the distillation term trains the "
                             "estimator)")
    parser.add_argument("--student-steps", type=int, default=8_000)
    parser.add_argument("--dagger-rounds", type=int, default=2,
                        help="offline DAgger rounds for the camera estimator after the BC warm start (0: none)")
    parser.add_argument("--dagger-episodes", type=int, default=1_000, help="student-driven episodes per round")
    parser.add_argument("--dagger-steps", type=int, default=6_000, help="BC steps per round")
    parser.add_argument("--dagger-lr", type=float, default=3e-4)
    parser.add_argument("--bc-threads", type=int, default=2, help="torch threads of the DAgger rounds' BC")
    parser.add_argument("--cameras", nargs="+", default=["front"], choices=["front", "top"],
                        help="the student's cameras (recorded for every dataset; the teacher ignores them)")
    parser.add_argument("--record-workers", type=int, default=2,
                        help="processes recording demos and rollouts (rendering-bound: one per core)")
    parser.add_argument("--steps", type=int, default=8_192, help="env steps per method")
    parser.add_argument("--n-steps", type=int, default=32, help="policy steps per env per iteration")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--eval-every", type=int, default=4_096)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--held-out-episodes", type=int, default=50)
    parser.add_argument("--held-out-seed", type=int, default=HELD_OUT_SEED,
                        help="first reset seed of the held-out evaluations; another value re-measures the same "
                             "policies (every folder under --root is reused) on episodes none of them has seen")
    args = parser.parse_args()
    if args.estimate_coef == 0 and "estimate_only" in args.methods:
        parser.error("--estimate-coef 0 leaves estimate_only with no term to train; drop it from --methods")
    if args.quick:
        args.demos, args.teacher_steps, args.student_steps, args.steps = 2, 20, 10, 256
        args.student_demos, args.dart_demos = 2, 2
        args.dagger_episodes, args.dagger_steps, args.record_workers = 2, 10, 1  # spawning workers costs ~10 s
        args.n_steps, args.epochs, args.eval_every, args.eval_episodes, args.held_out_episodes = 8, 1, 0, 0, 2
    warnings.filterwarnings("ignore", message=r".*(not within the observation space|maximum and minimum values)")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("MUJOCO_GL", "egl")
    import torch

    torch.set_num_threads(1)
    root = Path(args.root or Path("runs/bench-teacher-student") / time.strftime("%Y%m%d-%H%M%S"))
    prep = prepare(root, args)
    teacher, _ = held_out_success(prep["teacher"], args.held_out_episodes, [], args.task, args.held_out_seed)
    bc, bc_error = held_out_success(prep["student_bc"], args.held_out_episodes, args.cameras, args.task,
                                     args.held_out_seed)
    start = "after BC warm start" if args.init == "warm" else "with the teacher's layers and a fresh estimator"
    print(f"teacher {teacher:.0%}, student {start} {bc:.0%} (held-out seeds; median error of its "
          f"{POSITION_NAME[args.task]}-position estimate {bc_error} cm)", flush=True)
    rounds = [(bc, bc_error)]
    for k, student in enumerate(prep["dagger_students"], 1):
        rounds.append(held_out_success(student, args.held_out_episodes, args.cameras, args.task, args.held_out_seed))
        print(f"student after offline DAgger round {k} of its estimator: {rounds[-1][0]:.0%} (position error "
              f"{rounds[-1][1]} cm)", flush=True)
    init, init_error = rounds[-1]
    if len(rounds) > 1:
        print(f"  {prep['dagger_env_steps']} env steps of the student's own over {len(rounds) - 1} round(s); plot: "
              f"{plot_rounds(rounds, teacher, root / 'dagger_rounds.png', args.task)}", flush=True)
    results = []
    for method in args.methods:
        r = distill(method, root, prep, args)
        r["held_out_success"], r["position_error_cm"] = held_out_success(
            Path(r["checkpoint"]), args.held_out_episodes, args.cameras, args.task, args.held_out_seed)
        r["fraction_of_teacher"] = round(r["held_out_success"] / teacher, 3) if teacher > 0 else None
        results.append(r)
        print(f"  {method:10s} held-out {r['held_out_success']:.0%} = {r['fraction_of_teacher']} of the teacher  "
              f"(position error {r['position_error_cm']} cm; {r['env_steps']} env steps, {r['wall_s']:.0f} s)",
              flush=True)
    if results:
        # one file per method set and start: parallel invocations on one root
        figure = root / f"success_curves-{'-'.join(args.methods)}{run_suffix(args)}.png"
        plot(results, teacher, figure, args.task)
        print(f"plot: {figure}")
    summary = {"task": args.task, "teacher_success": teacher, "student_bc_success": bc,
               "student_bc_position_error_cm": bc_error,
               "student_init_success": init, "student_init_position_error_cm": init_error,
               "dagger_rounds": len(prep["dagger_students"]), "dagger_env_steps": prep["dagger_env_steps"],
               "dagger_round_success": [r[0] for r in rounds], "dagger_round_position_error_cm": [r[1] for r in rounds],
               "init": args.init, "init_fraction_of_teacher": round(init / teacher, 3) if teacher > 0 else None,
               "env_steps": args.steps, "held_out_episodes": args.held_out_episodes,
               "held_out_seed": args.held_out_seed}
    for r in results:
        summary[f"{r['method']}_success"] = r["held_out_success"]
        summary[f"{r['method']}_fraction_of_teacher"] = r["fraction_of_teacher"]
        summary[f"{r['method']}_wall_s"] = r["wall_s"]
        summary[f"{r['method']}_position_error_cm"] = r["position_error_cm"]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
