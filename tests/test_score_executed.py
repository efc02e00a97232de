"""algo.score_executed_only (ActionHead.set_executed): with env.execute = n < H, log-probs leave out what only the
H - n unexecuted actions depend on, consistently in sample and log_prob, for every head; and the config errors."""

from __future__ import annotations

import pytest
import torch
from test_head_contract import small_options

import envs
from fleet.config import FleetTrainConfig, LearnerConfig
from fleet.run_learner import FleetConfigError, check_learner_config
from robopolicy.algorithms.ppo import PPO, PPOConfig
from robopolicy.cli import compose
from robopolicy.critic import CriticConfig, ValueCritic
from robopolicy.encoders import EncoderConfig
from robopolicy.heads import HEADS, build_head
from robopolicy.numpy_actor import NumpyGaussianActor
from robopolicy.objective import ForwardCache, PPOClipTerm
from robopolicy.policy import Policy, PolicyConfig
from robopolicy.rollout import LocalRollouts
from robopolicy.train_run import ConfigError, build_training

H, A, N = 4, 3, 2  # chunk, action dims, executed actions


def _perturbed(head, trace: torch.Tensor, executed: bool) -> torch.Tensor:
    """The trace with the final output's executed (or unexecuted) actions changed."""
    out = trace.clone()
    sl = slice(0, N) if executed else slice(N, H)
    if out.dtype == torch.int64:  # tokens, (h, a) row-major
        cols = slice(sl.start * A, sl.stop * A)
        out[:, cols] = (out[:, cols] + 1) % head.config.num_bins
    elif out.dim() == 4:  # a chain (B, K+1, H, A): its last state is the chunk
        out[:, -1, sl] += 0.3
    else:  # Gaussian (B, H, A)
        out[:, sl] += 0.3
    return out


@pytest.mark.parametrize("name", sorted(HEADS))
def test_log_probs_leave_out_only_the_unexecuted_actions(name):
    torch.manual_seed(0)
    head = build_head(name, 8, A, H, small_options(name))
    feat = torch.randn(6, 8)
    with torch.no_grad():
        full = head.sample(feat)
        head.set_executed(N)
        assert head.executed == N
        sample = head.sample(feat)
        scored = head.log_prob(feat, sample.trace)
        # what sample records is what log_prob recomputes, so PPO's first ratio is 1
        assert torch.allclose(sample.logp, scored, atol=1e-5)
        # the unexecuted actions of the chunk no longer move the log-prob; the executed ones still do
        assert torch.allclose(head.log_prob(feat, _perturbed(head, sample.trace, executed=False)), scored, atol=1e-5)
        assert not torch.allclose(head.log_prob(feat, _perturbed(head, sample.trace, executed=True)), scored)
        masked_full = head.log_prob(feat, full.trace)
        head.set_executed(H)  # every action runs: back to the whole chunk
        assert head.executed is None
        unmasked = head.log_prob(feat, full.trace)
        assert torch.allclose(unmasked, full.logp, atol=1e-5)
        assert not torch.allclose(head.log_prob(feat, _perturbed(head, full.trace, executed=False)), unmasked)
    if name in ("diffusion", "flow"):  # only the last decision (the one that outputs the chunk) changes
        assert torch.allclose(masked_full[:, :-1], unmasked[:, :-1]) and not torch.allclose(masked_full, unmasked)


def test_set_executed_out_of_range_is_named():
    head = build_head("diffusion", 8, A, H, small_options("diffusion"))
    with pytest.raises(ValueError, match=r"^DiffusionHead.set_executed: n must be None or in 1..4, got 5$"):
        head.set_executed(5)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_ppo_first_minibatch_has_ratio_one_with_executed_scoring(name):
    torch.manual_seed(0)
    env = envs.make_gym_vec_env("robopolicy/ConstantReward-v0", num_envs=2, chunk=2, execute=1)
    policy = Policy(PolicyConfig(head=name, head_options=small_options(name), encoder=EncoderConfig([16], "tanh"),
                                 state_dim=env.state_dim, action_dim=env.action_dim, chunk=env.chunk,
                                 action_low=env.action_low.tolist(), action_high=env.action_high.tolist()))
    policy.head.set_executed(env.execute)
    critic = ValueCritic(env.state_dim, CriticConfig(hidden_sizes=[16]))
    ppo = PPO(policy, critic, PPOConfig(n_steps=8, batch_size=8, n_epochs=2), num_envs=2)
    try:
        batch = ppo.prepare(LocalRollouts(env, n_steps=8).collect(policy))
        _, first = PPOClipTerm(0.2)(ForwardCache(policy, critic, batch))
        assert float(first["ratio_mean"]) == pytest.approx(1.0, abs=1e-5)
        assert float(first["clip_frac"]) == 0.0
    finally:
        env.close()


def test_the_numpy_actor_steps_aside_for_executed_scoring():
    policy = Policy(PolicyConfig(state_dim=5, action_dim=2, chunk=3, encoder=EncoderConfig([16], "relu"),
                                 head_options={"squash": "clip"}))
    assert NumpyGaussianActor.for_policy(policy) is not None
    policy.head.set_executed(1)
    assert NumpyGaussianActor.for_policy(policy) is None


def test_train_sets_the_heads_executed_actions(tmp_path):
    cfg = compose("train", ["env=arm_reach", "env.chunk=4", "env.execute=2", "policy=flow",
                            "algo.score_executed_only=true", "logger=none", f"runs_dir={tmp_path}", "name=a"])
    session = build_training(cfg)
    try:
        assert session.policy.head.executed == 2
    finally:
        session.close()


@pytest.mark.parametrize("execute", ["null", "4"])
def test_score_executed_only_without_an_action_horizon_is_named(tmp_path, execute):
    cfg = compose("train", ["env=arm_reach", "env.chunk=4", f"env.execute={execute}",
                            "algo.score_executed_only=true", "logger=none", f"runs_dir={tmp_path}", "name=a"])
    with pytest.raises(ConfigError, match=r"^algo.score_executed_only needs env.execute below env.chunk \(4\): every "
                                          r"action of the chunk runs \(env.execute=4\)"):
        build_training(cfg)


def test_the_fleet_refuses_executed_scoring(tmp_path):
    cfg = LearnerConfig(root=str(tmp_path), tls=False, tokens_file="t.json",
                        train=FleetTrainConfig(algo="ppo", algo_options={"score_executed_only": True}))
    with pytest.raises(FleetConfigError, match=r"^train.algo_options.score_executed_only: the learner scores whole chunks"):
        check_learner_config(cfg)
