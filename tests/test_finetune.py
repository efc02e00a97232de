"""`init_policy` / `robopolicy finetune`: PPO starts from a saved policy, not from scratch."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from robopolicy.checkpoint import load_policy
from robopolicy.cli import compose
from robopolicy.evaluate import evaluate
from robopolicy.train_run import ConfigError, run_training

BASE = ["experiment=inverted_pendulum", "logger=none", "eval_episodes=0", "total_steps=1024", "env.num_envs=2"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    return run_training(compose("train", [*BASE, f"runs_dir={runs}", "name=pre"]), show_progress=False).run_dir


def test_finetune_starts_from_the_saved_weights(pretrained, tmp_path):
    start = load_policy(pretrained)
    # With a zero actor learning rate the actor must come out exactly as it went in.
    cfg = compose("train", [*BASE, f"runs_dir={tmp_path}", "name=ft", f"init_policy={pretrained}",
                            "algo.learning_rate=0.0", "algo.critic_learning_rate=1e-3"])
    end = load_policy(run_training(cfg, show_progress=False).run_dir)
    # ... and the observation statistics stay those it was trained with (frozen when fine-tuning).
    for (name, a), b in zip(start.state_dict().items(), end.state_dict().values()):
        assert torch.equal(a, b), name


def test_init_policy_for_another_env_is_rejected(pretrained, tmp_path):
    cfg = compose("train", ["env=hopper", "logger=none", f"runs_dir={tmp_path}", f"init_policy={pretrained}"])
    with pytest.raises(ConfigError, match=r"init_policy: .* has \(state_dim, action_dim, chunk\) = \(4, 1, 1\), "
                                          r"the env Hopper-v5 needs \(11, 3, 1\)"):
        run_training(cfg, show_progress=False)
    assert not any(tmp_path.iterdir())


def test_eval_deterministic_false_scores_the_sampled_policy(pretrained, tmp_path):
    """Periodic (seed 20000) and final (seed 10000 + seed) evaluations sample the policy when asked to."""
    cfg = compose("train", [*BASE, f"runs_dir={tmp_path}", "name=ft", f"init_policy={pretrained}",
                            "algo.learning_rate=0.0", "total_steps=512", "eval_every=512", "eval_episodes=3",
                            "eval_deterministic=false", "keep_best=false"])
    run = run_training(cfg, show_progress=False).run_dir
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    periodic = [r["eval/return"] for r in rows if "eval/return" in r and "eval/is_final" not in r]
    final = [r["eval/return"] for r in rows if "eval/is_final" in r]
    policy, env = load_policy(run), OmegaConf.load(run / "config.yaml").env

    def score(deterministic: bool, seed: int) -> float:
        return evaluate(policy, env, episodes=3, seed=seed, deterministic=deterministic).summary()["return_mean"]

    assert periodic[-1] == pytest.approx(score(False, 20_000))
    assert final == [pytest.approx(score(False, 10_000 + int(cfg.seed)))]
    assert score(False, 20_000) != pytest.approx(score(True, 20_000))  # the flag changes what is scored


def test_a_start_that_meets_the_stop_threshold_is_not_trained(pretrained, tmp_path, capsys):
    """The initial evaluation of init_policy already reaches stop_return: the run ends at step 0 with the starting
    weights as its checkpoint. It used to run one update before stopping, and to fail with KeyError 'eval/return'
    when that update had no evaluation."""
    cfg = compose("train", [*BASE, f"runs_dir={tmp_path}", "name=ft", f"init_policy={pretrained}",
                            "eval_every=512", "eval_episodes=2", "stop_return=-1e9", "keep_best=false"])
    result = run_training(cfg, show_progress=False)
    assert "not training: the starting policy's eval return" in capsys.readouterr().out
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 0] and rows[0]["eval/is_initial"] == 1.0 and rows[1]["eval/is_final"] == 1.0
    assert result.checkpoint.name == "step_000000000"
    for (name, a), b in zip(load_policy(pretrained).state_dict().items(), load_policy(result.run_dir).state_dict().values()):
        assert torch.equal(a, b), name


def test_token_experiment_fine_tunes_a_chunk_1_token_policy(tmp_path):
    """experiment=finetune_metaworld_tokens takes a token policy as it is: no diffusion/flow head option
    (ft_steps, min_std) reaches it, it acts one action per step, and it is fine-tuned at temperature 0.25."""
    small = ["env=inverted_pendulum", "env.num_envs=2", "env.vectorization=sync", "logger=none", "eval_episodes=0",
             f"runs_dir={tmp_path}"]
    pre = run_training(compose("train", [*small, "policy=tokens", "policy.head_options.d_model=16",
                                         "policy.head_options.num_bins=8", "total_steps=256", "algo.n_steps=128",
                                         "algo.batch_size=128", "name=pre"]), show_progress=False).run_dir
    cfg = compose("train", ["experiment=finetune_metaworld_tokens", *small, f"init_policy={pre}", "name=ft",
                            "total_steps=512", "algo.n_steps=128", "algo.batch_size=64",
                            "algo.critic_warmup_updates=1"])
    ft = run_training(cfg, show_progress=False).run_dir
    policy = load_policy(ft)
    assert (policy.config.chunk, policy.head.config.temperature) == (1, 0.25)
    rows = [json.loads(line) for line in (ft / "metrics.jsonl").read_text().splitlines()]
    actor_updates = [r for r in rows if r.get("ppo/critic_warmup") == 0.0]
    assert actor_updates and all(r["pg/approx_kl_step"] > 0 for r in actor_updates)
