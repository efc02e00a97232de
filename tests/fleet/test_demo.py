"""`robopolicy fleet demo`: learner + robot processes, live table, clean stop (slow: N robot processes start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.slow
def test_demo_runs_and_stops_cleanly(tmp_path):
    cmd = [sys.executable, "-m", "robopolicy", "fleet", "demo", "robots=2", "seconds=30", f"root={tmp_path}",
           "learner.train.algo=ppo", "learner.train.n_steps=200", "learner.train.lanes=2",
           "+learner.train.algo_options.n_epochs=1", "+learner.train.algo_options.batch_size=100"]
    out = subprocess.run(cmd, cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                         timeout=600, check=False)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["event"] == "demo_stopped" and summary["episodes"] > 0
    assert summary["sharded"] == summary["episodes"]  # every stored episode is in a finalized shard
    assert (tmp_path / "store" / "policies" / "v1").is_dir()  # the learner trained and published a new version
    for i in range(2):  # each robot drained its spool before exiting
        assert json.loads((tmp_path / "logs" / f"robot-{i}.log").read_text().strip().splitlines()[-1])["spooled"] == 0
