"""RECAP: the indicator is an exact extra input, labels follow the advantage, and the deployed policy prefers
the actions that paid off."""

from __future__ import annotations

import pytest
import torch

from fleet.recap import Recap, RecapConfig, advantage_indicator, conditioned_policy, fold_indicator, with_indicator
from robopolicy.policy import Policy, PolicyConfig
from robopolicy.types import OBS_STATE, Rollout

D, A = 3, 2


@pytest.fixture(autouse=True)
def one_thread():
    """As the learner runs (LearnerConfig.torch_threads): small MLPs on a busy 2-core box spin with more."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _policy() -> Policy:
    torch.manual_seed(0)
    cfg = PolicyConfig(state_dim=D, action_dim=A, chunk=1, action_low=[-1.0] * A, action_high=[1.0] * A)
    cfg.encoder.hidden_sizes = [32, 32]
    p = Policy(cfg)
    p.normalizer.update({OBS_STATE: torch.randn(64, D) * 3 + 1})  # non-trivial statistics must survive both maps
    return p.eval()


def _mean_action(policy: Policy, state: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return policy.act({OBS_STATE: state}, deterministic=True).actions


def test_conditioned_copy_acts_like_the_original_for_any_indicator():
    p, s = _policy(), torch.randn(8, D)
    wide = conditioned_policy(p)
    for i in (0.0, 1.0):
        torch.testing.assert_close(_mean_action(wide, with_indicator(s, torch.full((8,), i))), _mean_action(p, s))


def test_fold_is_exact_and_depends_on_the_indicator():
    p, s = _policy(), torch.randn(8, D)
    wide = conditioned_policy(p)
    with torch.no_grad():
        wide.encoder.net[0].weight[:, D].normal_()  # the indicator now matters
    on, off = (_mean_action(wide, with_indicator(s, torch.full((8,), i))) for i in (1.0, 0.0))
    assert (on - off).abs().max() > 1e-3
    fold_indicator(wide, p, 1.0)
    torch.testing.assert_close(_mean_action(p, s), on)
    fold_indicator(wide, p, 0.0)
    torch.testing.assert_close(_mean_action(p, s), off)


def test_indicator_top_fraction_of_own_steps_and_every_intervention():
    adv = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, -5.0])
    inter = torch.tensor([False, False, False, False, False, True])
    # own steps 0..4: the 0.6 quantile of [0, 1, 2, 3, 4] is 2.4 -> 3 and 4 positive; the intervention step too
    assert advantage_indicator(adv, inter, 0.4).tolist() == [False, False, False, True, True, True]


def _bandit_rollout(T: int, B: int, seed: int) -> Rollout:
    """One-step episodes: action +0.5 on dim 0 earns 1, -0.5 earns 0, half of each at the same states."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(T, B, D, generator=g)
    good = torch.rand(T, B, generator=g) < 0.5
    a = torch.zeros(T, B, 1, A)
    a[..., 0, 0] = torch.where(good, 0.5, -0.5)
    done = torch.ones(T, B, dtype=torch.bool)
    return Rollout(obs={OBS_STATE: s}, actions=a, trace=a.clone(), logp=torch.zeros(T, B, 1),
                   reward=good.float(), terminated=torch.zeros(T, B, dtype=torch.bool), truncated=done,
                   chunk_steps=torch.ones(T, B, dtype=torch.int64), policy_version=torch.zeros(T, B, dtype=torch.long),
                   final_obs={OBS_STATE: s}, masks={"intervention": torch.zeros(T, B, dtype=torch.bool)})


@pytest.mark.parametrize("conditioned", [True, False])
def test_deployed_policy_prefers_actions_that_paid_off(conditioned):
    """Plain imitation of these data averages +0.5 and -0.5 to ~0; conditioned on "positive" it picks +0.5.
    (conditioned=False trains the same data with every indicator positive: the control a broken label would give.)"""
    p = _policy()
    algo = Recap(p, RecapConfig(gamma=0.0, gae_lambda=0.0, positive_fraction=0.5, policy_steps=100,
                                learning_rate=3e-3, critic_learning_rate=3e-3))
    if not conditioned:
        algo.config.positive_fraction = 1.0  # quantile 0: everything but the minimum is "positive"
    for it in range(3):
        algo.update(_bandit_rollout(32, 8, seed=it))
    a0 = _mean_action(p, torch.randn(256, D))[:, 0, 0].mean().item()
    if conditioned:
        assert a0 > 0.35, a0
    else:
        assert abs(a0) < 0.2, a0


def test_recap_refuses_a_policy_with_cameras():
    cfg = PolicyConfig(state_dim=D, action_dim=A, chunk=1)
    cfg.encoder.image.cameras = ["front"]
    cfg.encoder.image.shape = [3, 32, 32]
    with pytest.raises(ValueError, match="state-only"):
        conditioned_policy(Policy(cfg))
