"""`robopolicy fleet robot` as a real process against a learner process: episodes with interventions are stored."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest
from conftest import ROOT, LearnerProc, free_port

from robopolicy.policy import Policy, PolicyConfig


def _robot(tmp_path, certs, port: int, extra: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "robopolicy", "fleet", "robot", "robot_id=robot-0", f"learner=localhost:{port}",
           f"ca={certs['ca']}", f"token_file={certs['tokens']}", f"spool={tmp_path / 'spool'}", *extra]
    return subprocess.run(cmd, cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=300, check=False)


def test_robot_process_streams_episodes_with_interventions(tmp_path, certs):
    Policy(PolicyConfig(state_dim=39, action_dim=4, chunk=1, action_low=[-1.0] * 4,
                        action_high=[1.0] * 4)).save_pretrained(tmp_path / "init")
    port = free_port()
    learner = LearnerProc(tmp_path / "store", certs, port, [f"train.init_policy={tmp_path / 'init'}"]).start()
    try:
        out = _robot(tmp_path, certs, port, ["episodes=2", "max_episode_steps=60", "chunk_steps=25",
                                             "teleop.kind=scripted", "teleop.takeover_after=0.5"])
    finally:
        learner.stop()
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["event"] == "stopped" and summary["episodes"] == 2 and summary["spooled"] == 0
    db = sqlite3.connect(tmp_path / "store" / "index.sqlite")
    rows = db.execute("SELECT num_chunks, num_steps, interventions, min_version FROM episodes").fetchall()
    db.close()
    # 60 steps in chunks of 25 -> 3 chunks; the scripted teleoperator held the last 30 steps
    assert rows == [(3, 60, 30, 0), (3, 60, 30, 0)]


@pytest.mark.parametrize("args,message", [
    (["episodes=1", "env_id=NoSuchEnv-v0"], "env_id: cannot build 'NoSuchEnv-v0'"),
    (["episodes=1", "token=wrong"], "UNAUTHENTICATED"),
])
def test_robot_process_errors_name_the_problem(tmp_path, certs, args, message):
    Policy(PolicyConfig(state_dim=39, action_dim=4, chunk=1)).save_pretrained(tmp_path / "init")
    port = free_port()
    learner = LearnerProc(tmp_path / "store", certs, port, [f"train.init_policy={tmp_path / 'init'}"]).start()
    try:
        out = _robot(tmp_path, certs, port, args)
    finally:
        learner.stop()
    assert out.returncode != 0 and message in out.stdout + out.stderr, (out.stdout + out.stderr)[-2000:]
