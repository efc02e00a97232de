"""PPO must actually learn: InvertedPendulum-v5 to a return >= 900 within 60k env steps."""

from __future__ import annotations

from robopolicy.cli import compose
from robopolicy.train_run import run_training


def test_ppo_solves_inverted_pendulum(tmp_path):
    cfg = compose("train", ["experiment=inverted_pendulum", "total_steps=60000", "logger=none", "eval_episodes=10",
                            f"runs_dir={tmp_path}", "name=ip", "seed=1"])
    result = run_training(cfg, show_progress=False)
    assert result.eval_summary is not None
    # A random policy scores ~5-10; a broken surrogate, GAE or normalizer stays far below 900.
    assert result.eval_summary["return_mean"] >= 900, result.eval_summary


def test_wandb_offline_logging_writes_a_local_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose("train", ["experiment=inverted_pendulum", "total_steps=1024", "logger=wandb", "eval_episodes=0",
                            f"runs_dir={tmp_path}", "name=wb"])
    result = run_training(cfg, show_progress=False)
    runs = list((result.run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))
