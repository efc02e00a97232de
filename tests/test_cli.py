"""Smoke runs through the real CLI (subprocesses) with tiny budgets, and its error messages."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ENV = {**os.environ, "MUJOCO_GL": "egl", "WANDB_MODE": "offline"}


def robopolicy(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robopolicy", *args], capture_output=True, text=True, env=ENV, check=False,
                          timeout=timeout, cwd=Path(__file__).resolve().parent.parent)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    out = robopolicy("train", "experiment=inverted_pendulum", "total_steps=2048", "checkpoint_every=1024",
                     "eval_episodes=2", "logger=none", f"runs_dir={runs}", "name=smoke")
    assert out.returncode == 0, out.stderr
    return runs / "smoke"


def test_train_writes_config_metrics_checkpoints_and_plot(smoke_run: Path):
    assert (smoke_run / "config.yaml").is_file()
    rows = [json.loads(line) for line in (smoke_run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] >= 2048 and "eval/return" in rows[-1]
    assert any("loss/pg" in r for r in rows)
    assert (smoke_run / "learning_curve.png").stat().st_size > 1000
    ckpts = sorted(p.name for p in (smoke_run / "checkpoints").glob("step_*"))
    assert len(ckpts) >= 2, ckpts  # one every 1024 steps plus the final one
    assert (smoke_run / "checkpoints" / "LATEST").read_text() == ckpts[-1]


def test_resume_continues_the_same_run(smoke_run: Path):
    before = (smoke_run / "metrics.jsonl").read_text().splitlines()
    last_step = json.loads(before[-1])["step"]
    out = robopolicy("train", f"resume={smoke_run}", "total_steps=4096", "eval_episodes=0", "logger=none")
    assert out.returncode == 0, out.stderr
    after = (smoke_run / "metrics.jsonl").read_text().splitlines()
    assert after[: len(before)] == before  # appended, not rewritten
    new_steps = [json.loads(line)["step"] for line in after[len(before):]]
    assert new_steps and new_steps[0] > last_step and new_steps[-1] >= 4096
    assert json.loads(after[len(before)])["train/iteration"] > json.loads(before[-2])["train/iteration"]
    # Wall-clock since the run started carries over the resume: it keeps rising from where the checkpoint was.
    elapsed = [json.loads(line).get("time/elapsed_s") for line in after]
    elapsed = [e for e in elapsed if e is not None]
    assert elapsed and all(b > a for a, b in itertools.pairwise(elapsed))


def test_resume_after_a_crash_past_the_last_checkpoint_logs_each_step_once(tmp_path: Path):
    """A run dies after logging rows past its last checkpoint (here: its last checkpoint folder is removed, as if the
    process was killed before saving it). Resuming from the checkpoint before redoes those steps: metrics.jsonl
    must hold each step once, in order, and the rows it replaced must be kept in metrics.superseded.jsonl."""
    import shutil

    out = robopolicy("train", "experiment=inverted_pendulum", "total_steps=2048", "checkpoint_every=1024",
                     "eval_episodes=0", "logger=none", f"runs_dir={tmp_path}", "name=crash")
    assert out.returncode == 0, out.stderr
    run = tmp_path / "crash"
    original = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    kept_ckpt, *later = sorted((run / "checkpoints").glob("step_*"))
    for folder in later:
        shutil.rmtree(folder)
    (run / "checkpoints" / "LATEST").write_text(kept_ckpt.name)
    ckpt_step = int(kept_ckpt.name.split("_")[1])
    lost = [r for r in original if r["step"] > ckpt_step]
    assert lost, "the first run logged nothing past its first checkpoint: the crash is not simulated"

    out = robopolicy("train", f"resume={run}", "total_steps=2048", "eval_episodes=0", "logger=none")
    assert out.returncode == 0, out.stderr
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == len(set(steps)), steps
    assert steps[-1] >= 2048
    superseded = [json.loads(line) for line in (run / "metrics.superseded.jsonl").read_text().splitlines()]
    assert superseded == lost


def test_supersede_rows_after_moves_only_later_rows_and_appends(tmp_path: Path):
    from robopolicy.run_logger import supersede_rows_after

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"step": s, "x": s}) + "\n" for s in (0, 10, 20, 30)))
    assert supersede_rows_after(metrics, 10) == 2
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [0, 10]
    metrics.write_text(metrics.read_text() + json.dumps({"step": 15}) + "\n")
    assert supersede_rows_after(metrics, 0) == 2  # a second resume appends to the superseded rows
    old = [json.loads(line)["step"] for line in (tmp_path / "metrics.superseded.jsonl").read_text().splitlines()]
    assert old == [20, 30, 10, 15]
    assert supersede_rows_after(metrics, 100) == 0


def test_eval_reports_ci_and_writes_video(smoke_run: Path):
    out = robopolicy("eval", f"ckpt={smoke_run}", "episodes=3", "video=true")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["episodes"] == 3 and summary["return_mean"] > 0 and "return_ci95" in summary
    video = Path(summary["video"])
    assert video.suffix == ".mp4" and video.stat().st_size > 1000


def test_wrong_hydra_key_is_named():
    out = robopolicy("train", "algo.clip_cof=0.1", "logger=none")
    assert out.returncode == 2
    assert "clip_cof" in out.stderr and "config error" in out.stderr


def test_unknown_config_group_option_is_named():
    out = robopolicy("train", "env=hoper", "logger=none")
    assert out.returncode == 2
    assert "hoper" in out.stderr


def test_missing_checkpoint_is_named(tmp_path):
    missing = tmp_path / "no_such_run"
    out = robopolicy("eval", f"ckpt={missing}")
    assert out.returncode == 2
    assert f"checkpoint not found: {missing}" in out.stderr.replace("\n", "")


def test_unknown_env_id_is_named_and_nothing_is_written(tmp_path):
    out = robopolicy("train", "env.id=Hoper-v5", "logger=none", f"runs_dir={tmp_path}")
    assert out.returncode == 2
    assert "Hoper-v5" in out.stderr and "Hopper-v5" in out.stderr  # the close id is suggested
    assert not any(tmp_path.iterdir())
