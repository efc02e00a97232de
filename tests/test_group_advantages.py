"""GRPO / GDPO advantages and the GroupRollouts source."""

from __future__ import annotations

import math

import pytest
import torch

import envs
from robopolicy.advantages import group_advantages
from robopolicy.encoders import EncoderConfig
from robopolicy.group_rollouts import GroupRollouts
from robopolicy.policy import Policy, PolicyConfig
from robopolicy.types import OBS_STATE


def test_gdpo_weighs_each_channel_while_summed_then_normalized_follows_the_largest():
    # One group of four episodes: two with a high dense return, and in each pair one success.
    channels = {"return": torch.tensor([100.0, 100.0, 0.0, 0.0]), "success": torch.tensor([0.0, 1.0, 0.0, 1.0])}
    group = torch.zeros(4, dtype=torch.long)
    coupled = group_advantages(channels, group, decoupled=False)
    decoupled = group_advantages(channels, group, decoupled=True)
    # Summed first: success moves the sum by 1 in 100, so the two high-return episodes look alike.
    assert float(coupled[1] - coupled[0]) < 0.05
    # Normalized per channel: return -> [1, 1, -1, -1], success -> [-1, 1, -1, 1]; sum [0, 2, -2, 0];
    # batch-normalized (std sqrt(2)) -> [0, sqrt 2, -sqrt 2, 0].
    s2 = math.sqrt(2.0)
    assert decoupled.tolist() == pytest.approx([0.0, s2, -s2, 0.0], abs=1e-5)
    assert not torch.allclose(coupled, decoupled, atol=0.1)


def test_group_advantages_sum_to_zero_within_each_group():
    torch.manual_seed(0)
    group = torch.arange(12) // 4
    channels = {"return": torch.randn(12) * 50, "success": (torch.rand(12) > 0.5).float()}
    for decoupled in (False, True):
        adv = group_advantages(channels, group, decoupled=decoupled)
        sums = torch.zeros(3).index_add_(0, group, adv)
        assert torch.allclose(sums, torch.zeros(3), atol=1e-5)


def test_group_rollouts_share_initial_states_in_a_group_and_mask_after_the_episode_ends():
    env = envs.make_gym_vec_env("InvertedPendulum-v5", num_envs=4, max_episode_steps=30)
    torch.manual_seed(0)
    policy = Policy(PolicyConfig(state_dim=env.state_dim, action_dim=env.action_dim, encoder=EncoderConfig([8], "tanh"),
                                 head_options={"log_std_init": 1.0},
                                 action_low=env.action_low.tolist(), action_high=env.action_high.tolist()))
    source = GroupRollouts(env, max_episode_steps=30, group_size=2, seed=7)
    rollout = source.collect(policy)
    first = rollout.obs[OBS_STATE][0]
    assert torch.equal(first[0], first[1]) and torch.equal(first[2], first[3])
    assert not torch.equal(first[0], first[2])
    # A noisy policy drops the pole early: steps after an episode's end carry no advantage.
    valid, adv = rollout.masks["valid"], rollout.advantages
    assert (~valid).any()
    assert (adv[~valid] == 0).all()
    per_env = adv.abs().amax(0)
    assert (per_env > 0).any()
    # The next round draws new initial states.
    assert not torch.equal(source.collect(policy).obs[OBS_STATE][0][0], first[0])
    env.close()


def test_group_size_must_divide_the_envs():
    env = envs.make_gym_vec_env("InvertedPendulum-v5", num_envs=3)
    with pytest.raises(ValueError, match="group_size"):
        GroupRollouts(env, max_episode_steps=10, group_size=2)
    env.close()
