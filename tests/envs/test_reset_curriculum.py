"""The reset curriculum: failed configurations are drawn more often, evaluation never sees the curriculum."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from omegaconf import OmegaConf

import envs.metaworld as mw
from robopolicy.evaluate import env_config
from robopolicy.reset_curriculum import FailurePrioritizedSampler


def test_weight_zero_is_uniform_and_failures_raise_a_configs_share():
    uniform = FailurePrioritizedSampler(50, weight=0.0)
    for _ in range(5):
        uniform.update(7, False)
    np.testing.assert_allclose(uniform.probabilities(), np.full(50, 1 / 50))

    s = FailurePrioritizedSampler(50, weight=0.5)
    for i in range(50):
        for _ in range(20):
            s.update(i, i != 7)  # config 7 always fails, the rest always succeed
    p = s.probabilities()
    assert p.sum() == pytest.approx(1.0)
    assert p[7] > 0.45  # nearly the whole prioritized half
    assert p.min() == pytest.approx(0.5 / 50, rel=0.05)  # the uniform half keeps every configuration visited
    draws = np.bincount([s.draw(np.random.default_rng(i)) for i in range(400)], minlength=50)
    assert draws[7] > 150


def test_all_succeeding_falls_back_to_uniform():
    s = FailurePrioritizedSampler(4, weight=1.0, ema=1.0)
    for i in range(4):
        s.update(i, True)
    np.testing.assert_allclose(s.probabilities(), np.full(4, 0.25))


def _near_equal_failures(priority: str, temperature: float = 1.0) -> FailurePrioritizedSampler:
    """50 configurations failing at near-equal rates (0.40-0.49), configuration 7 a little more often (0.50)."""
    s = FailurePrioritizedSampler(50, weight=0.5, priority=priority, temperature=temperature)
    s.success[:] = 1.0 - np.linspace(0.40, 0.49, 50)
    s.success[7] = 0.5
    return s


def test_rank_priority_leans_on_the_hardest_configuration_while_failure_rates_are_close():
    by_failure, by_rank = _near_equal_failures("failure").probabilities(), _near_equal_failures("rank").probabilities()
    assert by_failure[7] == pytest.approx(1 / 50, rel=0.15)  # near uniform: the failure shares are near equal
    harmonic = sum(1 / k for k in range(1, 51))
    assert by_rank[7] == pytest.approx(0.5 / 50 + 0.5 / harmonic)  # ~0.12: the top rank's share, 6x uniform
    assert by_rank.sum() == pytest.approx(1.0) and np.all(np.diff(np.delete(by_rank, 7)) > 0)  # rank order kept
    # A lower temperature sharpens either score; a higher one flattens it.
    sharp, flat = _near_equal_failures("rank", 0.5).probabilities(), _near_equal_failures("rank", 2.0).probabilities()
    assert sharp[7] > by_rank[7] > flat[7] > 1 / 50
    assert _near_equal_failures("failure", 0.1).probabilities()[7] > 1.5 * by_failure[7]


def test_rank_priority_shares_a_tie_and_draws_uniformly_before_any_episode():
    s = FailurePrioritizedSampler(4, weight=1.0, priority="rank")
    np.testing.assert_allclose(s.probabilities(), np.full(4, 0.25))  # every estimate at its prior: one tie
    s.success[:] = [0.2, 0.2, 0.9, 0.5]  # 0 and 1 tie for ranks 1-2, then 3 (rank 3) and 2 (rank 4)
    tie = (1 + 1 / 2) / 2
    np.testing.assert_allclose(s.probabilities(), np.array([tie, tie, 1 / 4, 1 / 3]) / (2 * tie + 1 / 4 + 1 / 3))


def test_learnability_priority_leans_on_half_solved_configurations_not_on_never_solved_ones():
    s = FailurePrioritizedSampler(4, weight=1.0, priority="learnability")
    np.testing.assert_allclose(s.probabilities(), np.full(4, 0.25))  # every estimate at its prior of 0.5
    s.success[:] = [0.0, 0.5, 1.0, 0.9]  # never solved, half solved, always solved, mostly solved
    np.testing.assert_allclose(s.probabilities(), np.array([0.0, 0.25, 0.0, 0.09]) / 0.34)
    failure = FailurePrioritizedSampler(4, weight=1.0)
    failure.success[:] = s.success
    assert np.argmax(failure.probabilities()) == 0  # where the failure share puts the most weight


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n": 0, "weight": 0.5}, "reset_curriculum: needs at least one reset configuration, got 0"),
    ({"n": 5, "weight": 1.5}, "reset_curriculum: weight must be in [0, 1], got 1.5"),
    ({"n": 5, "weight": 0.5, "ema": 0.0}, "reset_curriculum: ema must be in (0, 1], got 0.0"),
    ({"n": 5, "weight": 0.5, "priority": "staleness"},
     "reset_curriculum_priority: one of ('failure', 'rank', 'learnability'), got 'staleness'"),
    ({"n": 5, "weight": 0.5, "temperature": 0.0}, "reset_curriculum_temperature: must be above 0, got 0.0"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError) as err:
        FailurePrioritizedSampler(**kwargs)
    assert str(err.value) == message


def _curriculum(env: gym.Env) -> mw._ResetCurriculum:
    while not isinstance(env, mw._ResetCurriculum):
        env = env.env
    return env


def test_metaworld_env_draws_the_failed_configuration_and_records_outcomes():
    env = gym.make("robopolicy/MetaWorld-reach-v3", reset_curriculum=1.0, max_episode_steps=100)
    cur = _curriculum(env)
    cur.sampler.success[:] = 1.0
    cur.sampler.success[7] = 0.0  # with weight 1 every draw is configuration 7
    obs, info = env.reset(seed=0)
    assert info["reset_config"] == 7
    # The goal is configuration 7's: a plain env set to it by hand shows the same goal.
    plain = gym.make("robopolicy/MetaWorld-reach-v3")
    mw.task_selector(plain).toggle_sample_tasks_on_reset(False)
    plain.unwrapped.set_task(cur.configs[7])
    plain_obs, _ = plain.reset(seed=1)
    np.testing.assert_allclose(obs[-3:], plain_obs[-3:])
    plain.close()

    for _ in range(100):  # standing still fails reach
        obs, _, _, truncated, _ = env.step(np.zeros(4, np.float32))
    assert truncated
    env.reset()  # the ended episode is folded in at the next reset
    assert cur.sampler.visits[7] == 1 and cur.sampler.success[7] == 0.0

    expert, config = mw.scripted_expert("reach-v3"), 7
    cur.sampler.success[:] = 1.0
    cur.sampler.success[config] = 0.0
    obs, info = env.reset(seed=2)
    for _ in range(100):
        obs, *_ = env.step(expert.get_action(obs))
    env.reset()
    assert cur.sampler.visits[config] == 2 and cur.sampler.success[config] == pytest.approx(cur.sampler.ema)
    env.close()


def test_reset_seed_reproduces_the_draw():
    configs = []
    for _ in range(2):
        env = gym.make("robopolicy/MetaWorld-reach-v3", reset_curriculum=0.5)
        configs.append([env.reset(seed=s)[1]["reset_config"] for s in range(6)])
        env.close()
    assert configs[0] == configs[1] and len(set(configs[0])) > 1


def test_train_kwargs_reach_the_training_env_only():
    node = OmegaConf.create({"id": "x", "kwargs": {"task": "reach-v3"}, "train_kwargs": {"reset_curriculum": 0.5}})
    assert OmegaConf.to_container(env_config(node, training=True)) == {
        "id": "x", "kwargs": {"task": "reach-v3", "reset_curriculum": 0.5}}
    assert OmegaConf.to_container(env_config(node, training=False)) == {"id": "x", "kwargs": {"task": "reach-v3"}}
    assert "train_kwargs" not in env_config({"id": "x", "train_kwargs": {}}, training=True)


def test_the_training_env_gets_the_curriculum_and_evaluation_does_not():
    from hydra.utils import instantiate

    from robopolicy.train_run import build_env

    node = OmegaConf.load(Path(__file__).parents[2] / "configs" / "env" / "metaworld_reach.yaml")
    node.train_kwargs = {"reset_curriculum": 0.5}
    train_env, eval_env = build_env(node), instantiate(env_config(node, training=False))
    try:
        assert train_env.call("get_wrapper_attr", "sampler")[0].weight == 0.5
        with pytest.raises(AttributeError):
            eval_env.call("get_wrapper_attr", "sampler")
    finally:
        train_env.close()
        eval_env.close()


def _run_wide_envs(n: int, weight: float = 1.0) -> gym.vector.SyncVectorEnv:
    return gym.vector.SyncVectorEnv([
        lambda: gym.make("robopolicy/MetaWorld-reach-v3", reset_curriculum=weight, reset_curriculum_scope="run",
                         max_episode_steps=5) for _ in range(n)])


def test_run_wide_curriculum_pools_every_envs_episodes_and_sets_every_envs_draw():
    from robopolicy.reset_curriculum import RunWideCurriculum

    envs = _run_wide_envs(3)
    try:
        curriculum = RunWideCurriculum(envs)
        _, info = envs.reset(seed=0)
        first = [int(c) for c in info["reset_config"]]
        for _ in range(6):  # five steps of standing still fail reach; the sixth auto-resets (the outcome is folded)
            envs.step(np.zeros((3, 4), np.float32))
        metrics = curriculum.sync()
        visits = np.bincount(first, minlength=50)
        np.testing.assert_array_equal(curriculum.sampler.visits, visits)  # one episode from each env, in one sampler
        assert all(outcomes == [] for outcomes in envs.call("drain_reset_outcomes"))  # drained
        for pushed in envs.call("get_wrapper_attr", "pushed"):
            np.testing.assert_allclose(pushed, curriculum.sampler.probabilities())
        assert metrics["curriculum/hardest_config"] in first

        # Every env now draws what the learner's sampler says: all failure weight on configuration 11.
        curriculum.sampler.success[:] = 1.0
        curriculum.sampler.success[11] = 0.0
        curriculum.sync()
        _, info = envs.reset(seed=5)
        assert [int(c) for c in info["reset_config"]] == [11, 11, 11]
    finally:
        envs.close()


def test_an_env_scope_curriculum_keeps_its_outcomes_and_refuses_pushed_probabilities():
    env = gym.make("robopolicy/MetaWorld-reach-v3", reset_curriculum=0.5, max_episode_steps=3)
    cur = _curriculum(env)
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.zeros(4, np.float32))
    env.reset()
    assert cur.outcomes == [] and cur.sampler.visits.sum() == 1
    with pytest.raises(ValueError) as err:
        cur.set_reset_probabilities(np.full(50, 0.02))
    assert str(err.value) == ("set_reset_probabilities: this env's curriculum learns from its own episodes "
                              "(reset_curriculum_scope='env')")
    env.close()
    with pytest.raises(ValueError, match=r"reset_curriculum_scope: 'env' or 'run', got 'fleet'"):
        gym.make("robopolicy/MetaWorld-reach-v3", reset_curriculum=0.5, reset_curriculum_scope="fleet")


def test_a_run_wide_scope_without_a_curriculum_is_refused():
    from robopolicy.reset_curriculum import RunWideCurriculum

    envs = gym.vector.SyncVectorEnv([lambda: gym.make("robopolicy/MetaWorld-reach-v3")])
    with pytest.raises(ValueError) as err:
        RunWideCurriculum(envs)
    assert str(err.value) == ("reset_curriculum_scope=run: the training env has no reset curriculum (set "
                              "env.train_kwargs.reset_curriculum to a weight above 0)")
    envs.close()


def test_a_training_run_syncs_a_run_wide_curriculum_and_logs_it(tmp_path):
    from robopolicy.cli import compose
    from robopolicy.train_run import ConfigError, run_training

    base = ["env=metaworld_reach", "env.num_envs=2", "env.max_episode_steps=20", "policy=gaussian", "logger=none",
            "total_steps=160", "checkpoint_every=160", "eval_every=0", "eval_episodes=1", "algo.n_steps=20",
            "algo.batch_size=40", f"runs_dir={tmp_path}", "+env.train_kwargs.reset_curriculum=0.5",
            "+env.train_kwargs.reset_curriculum_scope=run"]
    run = run_training(compose("train", [*base, "name=wide"]), show_progress=False)
    rows = [json.loads(line) for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if "curriculum/hardest_p" in r]
    assert len(logged) == 4  # one per rollout of 2 x 20 steps
    # Two envs fail an episode of reach in every rollout (a fresh Gaussian policy, 20 steps): the pooled estimate
    # falls after each sync from the prior of 0.5, and the draw is no longer uniform.
    mean_success = [r["curriculum/mean_success"] for r in logged]
    assert 0.5 > mean_success[0] > mean_success[1] > mean_success[2] > mean_success[3]
    assert logged[-1]["curriculum/hardest_p"] > 1.1 / 50

    # With rank priority at a low temperature the same two rollouts' failures already concentrate the draw.
    ranked = run_training(compose("train", [*base, "name=rank", "total_steps=80",
                                            "+env.train_kwargs.reset_curriculum_priority=rank",
                                            "+env.train_kwargs.reset_curriculum_temperature=0.25"]), show_progress=False)
    rows = [json.loads(line) for line in (ranked.run_dir / "metrics.jsonl").read_text().splitlines()]
    ranked_p = [r["curriculum/hardest_p"] for r in rows if "curriculum/hardest_p" in r]
    assert len(ranked_p) == 2 and ranked_p[-1] > 0.2 > logged[1]["curriculum/hardest_p"]

    with pytest.raises(ConfigError, match="reset_curriculum_scope=run: needs algo.advantage=gae, got grpo"):
        run_training(compose("train", [*base, "name=grpo", "algo.advantage=grpo"]), show_progress=False)
