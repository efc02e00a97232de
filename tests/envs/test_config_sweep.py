"""Evaluation over every Meta-World configuration: each of the 50 runs once, in order, and the failures are named."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import envs.metaworld  # noqa: F401  (registers the Meta-World ids)
from robopolicy.evaluate import evaluate
from robopolicy.train_run import ConfigError, periodic_evaluator

CONFIGS = 50  # an MT1 task's goal / object configurations
REACH = Path(__file__).parents[2] / "configs" / "env" / "metaworld_reach.yaml"


def _goals_by_config() -> np.ndarray:
    """(50, 3): each configuration's goal, read off a sweeping env; also checks the sweep's order."""
    env = gym.make("robopolicy/MetaWorld-reach-v3")
    assert env.get_wrapper_attr("sweep_reset_configs")(1) == CONFIGS
    goals = []
    for i in range(CONFIGS):
        obs, info = env.reset(seed=0) if i == 0 else env.reset()
        assert info["reset_config"] == i
        goals.append(obs[-3:])
    _, info = env.reset(seed=53)  # a seeded reset restarts the walk at seed mod 50
    assert info["reset_config"] == 3
    env.close()
    return np.stack(goals)


class _ReachEvenConfigs:
    """Drives the hand to the goal on the even configurations and stands still on the odd ones."""

    training = False

    def __init__(self, goals: np.ndarray) -> None:
        self.goals = goals

    def eval(self) -> None: ...

    def train(self, mode: bool = True) -> None: ...

    def act(self, obs: dict[str, torch.Tensor], deterministic: bool = True) -> SimpleNamespace:
        state = obs["observation.state"].numpy()
        hand, goal = state[:, :3], state[:, -3:]
        config = np.argmin(np.linalg.norm(goal[:, None] - self.goals[None], axis=-1), axis=1)
        move = np.clip(10 * (goal - hand), -1, 1) * (config % 2 == 0)[:, None]
        actions = np.concatenate([move, np.zeros((len(state), 1))], axis=1)
        return SimpleNamespace(actions=torch.as_tensor(actions, dtype=torch.float32)[:, None])


def test_all_configs_runs_each_configuration_once_and_names_the_failed_ones():
    goals = _goals_by_config()
    assert len(np.unique(goals.round(4), axis=0)) == CONFIGS  # the goal tells the configuration
    env_cfg = OmegaConf.load(REACH)
    env_cfg.max_episode_steps = 60  # the proportional reach takes ~20 steps
    result = evaluate(_ReachEvenConfigs(goals), env_cfg, episodes=50, seed=777, all_configs=True)
    assert sorted(result.configs) == list(range(CONFIGS))
    summary = result.summary()
    assert summary["failed_configs"] == list(range(1, CONFIGS, 2))
    assert summary["success_rate"] == 0.5  # a deterministic policy: exact, whatever the seed
    again = evaluate(_ReachEvenConfigs(goals), env_cfg, episodes=50, seed=3, all_configs=True).summary()
    assert again["failed_configs"] == summary["failed_configs"]
    assert again["return_mean"] == pytest.approx(summary["return_mean"])

    drawn = evaluate(_ReachEvenConfigs(goals), env_cfg, episodes=50, seed=777).summary()
    assert "failed_configs" not in drawn and drawn["success_rate"] != 0.5  # a draw of configurations, with its error


def test_all_configs_refuses_what_it_cannot_sweep():
    policy = _ReachEvenConfigs(np.zeros((CONFIGS, 3)))
    with pytest.raises(ValueError, match=r"all_configs: episodes must be a multiple of the task's 50 configurations, got 30"):
        evaluate(policy, OmegaConf.load(REACH), episodes=30, max_envs=1, all_configs=True)
    toy = {"_target_": "envs.gym_vec.make_gym_vec_env", "id": "robopolicy/ConstantReward-v0", "num_envs": 1}
    with pytest.raises(ValueError, match=r"all_configs: env 'robopolicy/ConstantReward-v0' has no fixed set of reset"):
        evaluate(policy, toy, episodes=50, max_envs=1, all_configs=True)
    curriculum = OmegaConf.load(REACH)
    curriculum.kwargs.reset_curriculum = 0.5  # in kwargs, not train_kwargs: the eval env would draw with it
    with pytest.raises(ValueError, match="all_configs: the env draws its configurations with reset_curriculum"):
        evaluate(policy, curriculum, episodes=50, max_envs=1, all_configs=True)


def test_a_training_run_with_a_wrong_episode_count_fails_before_it_trains():
    cfg = OmegaConf.create({"env": OmegaConf.load(REACH), "eval_episodes": 30, "eval_all_configs": True})
    with pytest.raises(ConfigError, match=r"eval_all_configs: all_configs: episodes must be a multiple .* got 30"):
        periodic_evaluator(cfg)
    cfg.eval_episodes = 100
    assert callable(periodic_evaluator(cfg))
