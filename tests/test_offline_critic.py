"""The offline critic phase of o2o: returns-to-go by hand, and a critic that fits them."""

from __future__ import annotations

import pytest
import torch

from robopolicy.critic import CriticConfig, ValueCritic
from robopolicy.normalizer import ObsNormalizer, ReturnNormalizer
from robopolicy.offline_critic import discounted_returns, pretrain_critic
from robopolicy.types import OBS_STATE


def test_discounted_returns_restart_at_each_episode():
    reward = torch.tensor([1.0, 2.0, 3.0, 10.0, 20.0])
    episode = torch.tensor([0, 0, 0, 1, 1])
    g = discounted_returns(reward, episode, gamma=0.5)
    # episode 0: G2 = 3, G1 = 2 + 0.5 * 3 = 3.5, G0 = 1 + 0.5 * 3.5 = 2.75; episode 1: G4 = 20, G3 = 10 + 10 = 20
    assert g.tolist() == pytest.approx([2.75, 3.5, 3.0, 20.0, 20.0])


def test_pretrained_critic_explains_the_returns_on_the_return_normalizers_scale():
    torch.manual_seed(0)
    n = 512
    state = torch.randn(n, 3)
    returns = 50.0 * state[:, 0] + 100.0  # a value the critic can represent, on a large reward scale
    critic = ValueCritic(3, CriticConfig(hidden_sizes=[32, 32]))
    norm = ObsNormalizer({OBS_STATE: 3})
    rn = ReturnNormalizer(num_envs=1, gamma=0.99)
    metrics = pretrain_critic(critic, norm, {OBS_STATE: state}, returns, rn, steps=600, lr=3e-3, batch_size=128)
    assert metrics["offline/return_scale"] == pytest.approx(float(returns.std(unbiased=False)), rel=1e-3)
    assert metrics["offline/critic_explained_variance"] > 0.95
    assert float(rn.rms.count) >= n  # the online reward scaling starts from the demo returns
