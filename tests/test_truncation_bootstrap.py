"""End to end (env adapter -> LocalRollouts -> PPO critic): time-limit truncation bootstraps,
termination does not. Both toy envs observe a constant, so V has one value to learn:
    ConstantReward (truncated every 5 steps):  V = 1 / (1 - gamma)               = 10
    TerminalReward (terminated every 5 steps): V = mean_k (1 - gamma^k)/(1 - gamma) = 2.62
"""

from __future__ import annotations

import pytest
import torch

import envs
from robopolicy.algorithms.ppo import PPO, PPOConfig
from robopolicy.critic import CriticConfig, ValueCritic
from robopolicy.encoders import EncoderConfig
from robopolicy.policy import Policy, PolicyConfig
from robopolicy.rollout import LocalRollouts
from robopolicy.types import OBS_STATE

GAMMA = 0.9


def learned_value(env_id: str) -> float:
    torch.manual_seed(0)
    env = envs.make_gym_vec_env(env_id, num_envs=4)
    policy = Policy(PolicyConfig(state_dim=2, action_dim=1, encoder=EncoderConfig([8], "tanh")))
    critic = ValueCritic(2, CriticConfig(hidden_sizes=[8], activation="tanh"))
    # 30 steps = 6 whole episodes: rollout ends coincide with episode ends, so targets are exact.
    cfg = PPOConfig(n_steps=30, batch_size=120, n_epochs=10, gamma=GAMMA, gae_lambda=1.0, learning_rate=0.0,
                    critic_learning_rate=3e-2, normalize_reward=False)
    ppo = PPO(policy, critic, cfg, num_envs=4)
    source = LocalRollouts(env, cfg.n_steps)
    for _ in range(40):
        ppo.update(source.collect(policy))
    env.close()
    with torch.no_grad():
        return float(critic(policy.normalizer({OBS_STATE: torch.zeros(1, 2)})))


def test_truncated_episodes_bootstrap_to_the_infinite_horizon_value():
    assert learned_value("robopolicy/ConstantReward-v0") == pytest.approx(1 / (1 - GAMMA), rel=0.05)


def test_terminated_episodes_do_not_bootstrap():
    expected = sum((1 - GAMMA**k) / (1 - GAMMA) for k in range(1, 6)) / 5
    assert learned_value("robopolicy/TerminalReward-v0") == pytest.approx(expected, rel=0.05)
