"""``stop_success`` with ``stop_confirm``: an evaluation that clears the bar is repeated on other evaluation seeds, and
the run stops only if all of them together clear it, so one lucky evaluation does not end a run."""

from __future__ import annotations

import json

import pytest

from robopolicy import train_run
from robopolicy.cli import compose
from robopolicy.evaluate import EvalResult
from robopolicy.train_run import ConfigError, run_training

TOY = ["env=constant_reward", "env.num_envs=2", "policy=gaussian", "logger=none", "eval_episodes=4", "eval_every=64",
       "total_steps=256", "checkpoint_every=256", "algo.n_steps=16", "algo.batch_size=32", "stop_success=0.9"]


@pytest.fixture
def lucky_seed(monkeypatch) -> list[int]:
    """An ``evaluate`` stand-in: every episode succeeds on the periodic evaluation's own seed (20,000), half of them
    on any other; returns the seeds it was called with."""
    seeds: list[int] = []

    def fake(policy, env_cfg, episodes, seed, **kwargs):
        seeds.append(seed)
        wins = episodes if seed == 20_000 else episodes // 2
        return EvalResult(returns=[0.0] * episodes, lengths=[1] * episodes,
                          successes=[True] * wins + [False] * (episodes - wins))

    monkeypatch.setattr(train_run, "evaluate", fake)
    return seeds


def _evaluations(run_dir) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "eval/success" in r and not r.get("eval/is_final")]


def test_one_evaluation_at_the_bar_stops_a_run_without_confirmation(tmp_path, lucky_seed):
    run = run_training(compose("train", [*TOY, f"runs_dir={tmp_path}", "name=plain"]), show_progress=False)
    assert [r["step"] for r in _evaluations(run.run_dir)] == [64]
    assert "eval/confirmed_success" not in _evaluations(run.run_dir)[0]


def test_a_lucky_evaluation_that_the_repeats_do_not_confirm_does_not_stop_the_run(tmp_path, lucky_seed):
    run = run_training(compose("train", [*TOY, "stop_confirm=2", f"runs_dir={tmp_path}", "name=confirm"]),
                       show_progress=False)
    evals = _evaluations(run.run_dir)
    assert [r["step"] for r in evals] == [64, 128, 192, 256]  # ran to total_steps
    assert all(r["eval/success"] == 1.0 and r["eval/confirmed_success"] == pytest.approx(2 / 3) for r in evals)
    assert lucky_seed[:3] == [20_000, 21_000, 22_000]


def test_stop_confirm_needs_a_bar_to_confirm(tmp_path):
    cfg = compose("train", [*TOY, "stop_success=null", "stop_confirm=2", f"runs_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="stop_confirm=2: expected a count >= 0 of repeated evaluations, and "
                                          "stop_success to confirm"):
        run_training(cfg, show_progress=False)
