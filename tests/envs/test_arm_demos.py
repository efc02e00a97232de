"""`robopolicy demos env=arm_*`: the arm's expert recorded as a LeRobotDataset with its randomization per frame."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "MUJOCO_GL": "egl", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}


def test_cli_records_arm_demos_with_randomization(tmp_path):
    root = tmp_path / "pp"
    out = subprocess.run(
        [sys.executable, "-m", "robopolicy", "demos", "env=arm_pick_place", "episodes=3", f"root={root}",
         "env.kwargs.randomization.enabled=true", "env.kwargs.privileged=true"],
        check=False, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/Arm-PickPlace-v0", root=root)
    assert ds.num_episodes == 3 and ds.fps == 25
    item = ds[0]
    assert item["observation.state"].shape == (26,) and item["action"].shape == (4,)
    assert item["observation.privileged"].shape == (22,) and item["task"].startswith("pick up the cube")
    cols = ds.hf_dataset.with_format("numpy")
    rand = np.stack(cols["randomization"])  # (N, 6): constant within an episode, drawn anew per episode
    ep = np.asarray(cols["episode_index"])
    per_episode = [rand[ep == e] for e in range(3)]
    assert all((r == r[0]).all() for r in per_episode)
    assert len({tuple(r[0]) for r in per_episode}) == 3
    assert np.asarray(cols["next.success"]).any()
