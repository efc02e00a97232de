"""Contract over every registered head: build, act, PPO update, save/load (STYLE.md, tests #2).

The same PPO code path must serve every head: the first minibatch has ratio 1, every metric is
finite, and a policy reloaded from disk reproduces the stored per-decision log-probs.
"""

from __future__ import annotations

import pytest
import torch

import envs
from robopolicy.algorithms.ppo import PPO, PPOConfig
from robopolicy.critic import CriticConfig, ValueCritic
from robopolicy.encoders import EncoderConfig
from robopolicy.heads import HEADS
from robopolicy.objective import ForwardCache, PPOClipTerm
from robopolicy.policy import Policy, PolicyConfig
from robopolicy.rollout import LocalRollouts


def small_options(name: str) -> dict:
    """Small networks so the contract runs in seconds; only fields the head's config has."""
    wanted = {"hidden_sizes": [32, 32], "num_inference_steps": 4, "num_steps": 4, "num_train_timesteps": 20}
    fields = HEADS[name][1].__dataclass_fields__
    return {k: v for k, v in wanted.items() if k in fields}


@pytest.mark.parametrize("head", sorted(HEADS))
def test_head_contract(head, tmp_path):
    torch.manual_seed(0)
    env = envs.make_gym_vec_env("robopolicy/ConstantReward-v0", num_envs=2, chunk=2)
    policy = Policy(PolicyConfig(head=head, head_options=small_options(head), encoder=EncoderConfig([16], "tanh"),
                                 state_dim=env.state_dim, action_dim=env.action_dim, chunk=env.chunk,
                                 action_low=env.action_low.tolist(), action_high=env.action_high.tolist()))
    critic = ValueCritic(env.state_dim, CriticConfig(hidden_sizes=[16]))
    ppo = PPO(policy, critic, PPOConfig(n_steps=8, batch_size=8, n_epochs=2), num_envs=2)
    rollout = LocalRollouts(env, n_steps=8).collect(policy)
    S = policy.num_decisions
    assert rollout.actions.shape == (8, 2, 2, 1) and rollout.logp.shape == (8, 2, S)
    assert torch.isfinite(rollout.logp).all() and rollout.actions.abs().max() <= 1.0

    batch = ppo.prepare(rollout)
    _, first = PPOClipTerm(0.2)(ForwardCache(policy, critic, batch))
    assert float(first["ratio_mean"]) == pytest.approx(1.0, abs=1e-5)
    assert float(first["clip_frac"]) == 0.0

    before = [p.detach().clone() for p in policy.parameters()]
    metrics = ppo.update(rollout)
    assert all(torch.isfinite(torch.tensor(v)) for k, v in metrics.items() if k != "ppo/log_std_mean")
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))

    loaded = Policy.from_pretrained(policy.save_pretrained(tmp_path / head))
    with torch.no_grad():
        assert torch.allclose(loaded.log_prob(batch.obs, batch.trace), policy.log_prob(batch.obs, batch.trace),
                              atol=1e-5)
    env.close()
