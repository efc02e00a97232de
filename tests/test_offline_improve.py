"""The offline policy-improvement phase of o2o (Uni-O4): it moves the policy toward the rewarded demo
actions, its OPE gate rejects by restoring the exact weights, bad keys are named, and every head runs it.

The dataset: one-step episodes, state ~ N(0, 1) (2-D) that does not matter, actions near +0.5 pay 1,
near -0.5 pay 0. A policy that imitates all of it is broad around 0; improvement must shift it to +0.5.
"""

from __future__ import annotations

import pytest
import torch
from test_head_contract import small_options

from robopolicy.algorithms.ppo import PPOConfig
from robopolicy.encoders import EncoderConfig
from robopolicy.heads import HEADS
from robopolicy.offline_improve import ChunkQ, improve_offline, split_episodes
from robopolicy.policy import Policy, PolicyConfig
from robopolicy.types import OBS_STATE


def two_mode_demos(n: int = 256, chunk: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    good = torch.arange(n) % 2 == 0
    centre = torch.where(good, 0.5, -0.5).view(n, 1, 1)
    actions = (centre + 0.1 * torch.randn(n, chunk, 1, generator=g)).clamp(-1, 1)
    obs = {OBS_STATE: torch.randn(n, 2, generator=g)}
    return obs, actions, good.float(), torch.arange(n)  # reward, episode index (one frame each)


def tiny_policy(head: str, chunk: int = 1, options: dict | None = None) -> Policy:
    return Policy(PolicyConfig(head=head, head_options=options if options is not None else small_options(head),
                               encoder=EncoderConfig([16], "tanh"), state_dim=2, action_dim=1, chunk=chunk,
                               action_low=[-1.0], action_high=[1.0]))


def config(**kw) -> PPOConfig:
    base = {"name": "o2o", "offline_improve_iters": 3, "offline_q_steps": 300, "offline_improve_epochs": 4,
            "offline_improve_states": 128, "offline_improve_samples": 8, "batch_size": 256, "learning_rate": 1e-2,
            "critic_learning_rate": 3e-3, "bc_batch_size": 128, "clip_coef": 0.2, "target_kl": None}
    return PPOConfig(**(base | kw))


@torch.no_grad()
def mean_action(policy: Policy, obs) -> float:
    torch.manual_seed(1)
    return float(policy.act({k: v.repeat(8, 1) for k, v in obs.items()}).actions.mean())


def test_q_ranks_the_rewarded_mode_above_the_other():
    obs, actions, reward, _ = two_mode_demos()
    q = ChunkQ(2, 1, 1, [32, 32])
    metrics = q.fit(obs[OBS_STATE], actions, reward, steps=300, lr=3e-3, batch_size=128,
                    generator=torch.Generator().manual_seed(0))
    s = obs[OBS_STATE][:64]
    assert metrics["offline/q_explained_variance"] > 0.9
    with torch.no_grad():
        gap = float((q(s, torch.full((64, 1, 1), 0.5)) - q(s, torch.full((64, 1, 1), -0.5))).mean())
    assert gap > 0.8


def test_held_out_frames_are_whole_episodes():
    episode = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3, 3])
    train, held = split_episodes(episode, 0.5, torch.Generator().manual_seed(0))
    assert sorted(train.tolist() + held.tolist()) == list(range(10)) and len(held) > 0 and len(train) > 0
    assert not set(episode[train].tolist()) & set(episode[held].tolist())


def test_improvement_shifts_a_broad_policy_toward_the_rewarded_actions():
    torch.manual_seed(0)
    obs, actions, reward, episode = two_mode_demos()
    policy = tiny_policy("gaussian", options={"log_std_init": -0.7})  # std 0.5 around 0
    before = mean_action(policy, obs)
    rows = improve_offline(policy, obs, actions, reward, episode, config(), seed=0)
    after = mean_action(policy, obs)
    assert abs(before) < 0.15 and after > before + 0.2, (before, after)
    assert rows[0]["offline/accepted"] == 1.0 and rows[-1]["offline/ope_new"] > rows[0]["offline/ope_old"] + 0.1
    assert {"offline/q_loss", "loss/pg", "pg/approx_kl"} <= set(rows[0])


def test_a_q_that_does_not_generalize_leaves_the_policy_untouched():
    torch.manual_seed(0)
    obs, actions, reward, episode = two_mode_demos()
    reward = torch.rand(reward.shape, generator=torch.Generator().manual_seed(3))  # returns that nothing predicts
    policy = tiny_policy("gaussian", options={"log_std_init": -0.7})
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    rows = improve_offline(policy, obs, actions, reward, episode, config())
    assert len(rows) == 1 and rows[0]["offline/q_rejected"] == 1.0 and rows[0]["offline/accepted"] == 0.0
    assert rows[0]["offline/q_explained_variance_heldout"] < 0.0
    assert all(torch.equal(before[k], v) for k, v in policy.state_dict().items())


def test_a_rejected_round_restores_the_weights_byte_for_byte():
    torch.manual_seed(0)
    obs, actions, reward, episode = two_mode_demos()
    policy = tiny_policy("gaussian", options={"log_std_init": -0.7})
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    rows = improve_offline(policy, obs, actions, reward, episode, config(offline_ope_margin=1e6, bc_coef=0.1))
    assert len(rows) == 1 and rows[0]["offline/accepted"] == 0.0 and rows[0]["offline/minibatches"] > 0
    assert all(torch.equal(before[k], v) for k, v in policy.state_dict().items())


@pytest.mark.parametrize(("key", "value"), [("offline_improve_iters", -1), ("offline_improve_samples", 1),
                                            ("offline_ope_margin", -0.1), ("offline_holdout_frac", 1.0)])
def test_bad_offline_values_name_their_key(key, value):
    with pytest.raises(ValueError, match=f"algo.{key}"):
        PPOConfig(**{key: value})


@pytest.mark.parametrize("head", sorted(HEADS))
def test_every_head_runs_the_offline_phase(head):
    torch.manual_seed(0)
    obs, actions, reward, episode = two_mode_demos(n=64, chunk=2)
    policy = tiny_policy(head, chunk=2)
    rows = improve_offline(policy, obs, actions, reward, episode,
                           config(offline_improve_iters=1, offline_q_steps=20, offline_improve_epochs=1,
                                  offline_improve_states=16, offline_improve_samples=2, batch_size=16,
                                  learning_rate=1e-3, bc_coef=0.1, offline_q_min_heldout_ev=-1e9))
    row = rows[0]
    assert {"offline/ope_old", "offline/ope_new", "offline/accepted", "loss/pg", "loss/bc"} <= set(row)
    assert all(torch.isfinite(torch.tensor(v)) for v in row.values())
    assert all(torch.isfinite(p).all() for p in policy.parameters())
