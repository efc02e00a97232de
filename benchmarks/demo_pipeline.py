"""The camera-demo pipeline of the teacher-student benchmark: recording, loading and combining LeRobotDatasets.

Our arm's pick-place under the default randomization, front camera 84x84 plus proprioception and
observation.privileged, as ``benchmarks/teacher_student_distill.py`` records it. In one run:
    record   ``record_demos(..., workers=1)`` vs ``workers=N``: frames per second, and whether the two datasets
             hold the same frames (each episode draws its noise from its own seed)
    load     every frame into memory three ways:
               ours        ``load_demos`` (whole Arrow columns, PNG bytes decoded once)
               per_row     the same function reading row by row through datasets' formatting (its fallback, and
                           what it did before)
               lerobot     ``LeRobotDataset[i]`` for every frame (LeRobot's own access path)
    combine  two folders for one BC run: ``load_demos([a, b])`` vs LeRobot's ``aggregate_datasets`` then loading
             the merged copy

    python benchmarks/demo_pipeline.py --quick       # 12 episodes per folder, < 1 minute
    python benchmarks/demo_pipeline.py               # 200 episodes per folder
The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path


def record(root: Path, episodes: int, seed: int, workers: int) -> float:
    """Seconds to record as benchmarks/teacher_student_distill.py does (front camera)."""
    from teacher_student_distill import record_arm_demos

    t0 = time.perf_counter()
    record_arm_demos(root, episodes, seed, ["recorder.progress=false"], workers, ["front"])
    return time.perf_counter() - t0


def frames(root: Path) -> int:
    return int(json.loads((root / "meta" / "info.json").read_text())["total_frames"])


def same_data(a, b) -> bool:
    import torch

    return (a.obs.keys() == b.obs.keys() and all(torch.equal(a.obs[k], b.obs[k]) for k in a.obs)
            and torch.equal(a.actions, b.actions) and torch.equal(a.episode_index, b.episode_index))


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def load_lerobot(root: Path) -> int:
    """Every frame through LeRobotDataset.__getitem__, as a LeRobot training loop reads them."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset(f"local/{root.name}", root=root)
    for i in range(len(ds)):
        ds[i]
    return len(ds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="12 episodes per folder (< 1 minute)")
    parser.add_argument("--episodes", type=int, default=200, help="episodes per recorded folder")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    episodes = 12 if args.quick else args.episodes
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    import robopolicy.data.demos as demos_module
    from robopolicy.data.demos import load_demos, quiet_lerobot_video_probe

    quiet_lerobot_video_probe()
    out: dict = {"episodes": episodes, "workers": args.workers}
    with tempfile.TemporaryDirectory() as tmp:
        a, a_par, b = Path(tmp) / "a", Path(tmp) / "a_workers", Path(tmp) / "b"
        serial_s = record(a, episodes, 0, 1)
        parallel_s = record(a_par, episodes, 0, args.workers)
        record(b, episodes, 10_000, args.workers)
        n = frames(a)
        out |= {"frames": n, "record_frames_per_s_1_worker": round(n / serial_s, 1),
                f"record_frames_per_s_{args.workers}_workers": round(n / parallel_s, 1),
                "record_speedup": round(serial_s / parallel_s, 2)}
        print(f"record: {n} frames, 1 worker {n / serial_s:,.0f} frames/s, {args.workers} workers "
              f"{n / parallel_s:,.0f} frames/s ({serial_s / parallel_s:.2f}x)", flush=True)

        ours_s, ours = timed(lambda: load_demos(a, chunk=4))
        out["workers_same_frames"] = same_data(ours, load_demos(a_par, chunk=4))
        arrow_table = demos_module._arrow_table
        demos_module._arrow_table = lambda hf: None  # the per-row read
        try:
            rows_s, rows = timed(lambda: load_demos(a, chunk=4))
        finally:
            demos_module._arrow_table = arrow_table
        lerobot_s, _ = timed(lambda: load_lerobot(a))
        out |= {"load_ours_s": round(ours_s, 2), "load_per_row_s": round(rows_s, 2),
                "load_lerobot_s": round(lerobot_s, 2), "load_same_tensors": same_data(ours, rows),
                "load_ratio_vs_lerobot": round(lerobot_s / ours_s, 2),
                "load_ratio_vs_per_row": round(rows_s / ours_s, 2)}
        print(f"load {n} frames: ours {ours_s:.2f} s, per-row {rows_s:.2f} s, LeRobotDataset[i] {lerobot_s:.2f} s "
              f"({lerobot_s / ours_s:.1f}x / {rows_s / ours_s:.1f}x ours)", flush=True)

        from lerobot.datasets.aggregate import aggregate_datasets

        list_s, combined = timed(lambda: load_demos([a, b], chunk=4))
        merged = Path(tmp) / "merged"

        def merge_then_load():
            aggregate_datasets(["local/a", "local/b"], "local/merged", roots=[a, b], aggr_root=merged)
            return load_demos(merged, chunk=4)

        merge_s, merged_data = timed(merge_then_load)
        shutil.rmtree(merged)
        out |= {"combine_list_s": round(list_s, 2), "combine_merge_then_load_s": round(merge_s, 2),
                "combine_ratio": round(merge_s / list_s, 2), "combine_same_tensors": same_data(combined, merged_data)}
        print(f"two folders ({len(combined)} frames): load_demos([a, b]) {list_s:.2f} s, aggregate_datasets + load "
              f"{merge_s:.2f} s ({merge_s / list_s:.1f}x)", flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
