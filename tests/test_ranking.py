"""Policy ranking scores (robopolicy/ranking.py): Spearman by hand and against scipy, the VSDR combination,
and OOD scores that separate a policy that matches recorded behaviour from one that does not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robopolicy.encoders import EncoderConfig
from robopolicy.policy import Policy, PolicyConfig
from robopolicy.ranking import (
    average_ranks,
    behaviour_ood_score,
    check_policy_fits,
    combine,
    input_ood_score,
    spearman,
)
from robopolicy.types import OBS_STATE


def tiny_policy(seed: int, state_dim: int = 5, action_dim: int = 3, head: str = "gaussian") -> Policy:
    torch.manual_seed(seed)
    cfg = PolicyConfig(head=head, encoder=EncoderConfig(hidden_sizes=[16]), state_dim=state_dim,
                       action_dim=action_dim, chunk=1, action_low=[-2.0] * action_dim, action_high=[2.0] * action_dim)
    return Policy(cfg)


def test_average_ranks_share_ties():
    assert average_ranks([10, 30, 20, 20]).tolist() == [1.0, 4.0, 2.5, 2.5]


def test_spearman_hand_cases():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # One swap among 4: 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / 60 = 0.8
    assert spearman([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(0.8)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="x has 2 values, y has 3"):
        spearman([1, 2], [1, 2, 3])


def test_spearman_matches_scipy_with_ties():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 5, size=10).astype(float)  # many ties, as success rates over few episodes have
        y = x + rng.normal(0, 2, size=10)
        if len(set(x)) > 1:
            assert spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic, abs=1e-12)


def test_filter_combination_orders_validated_candidates_by_ood():
    sim = [0.9, 1.0, 0.5, 0.95]
    ood = [0.01, 0.30, 0.001, 0.02]
    # keep 0.8: candidates 0, 1, 3 are validated (>= 0.8); ordered by OOD: 0, 3, 1; then 2 (sim 0.5), despite its OOD.
    score = combine(sim, ood, "filter", keep=0.8)
    assert np.argsort(-score).tolist() == [0, 3, 1, 2]
    # keep 0: every candidate is validated, the OOD score alone orders them.
    assert np.argsort(-combine(sim, ood, "filter", keep=0.0)).tolist() == [2, 0, 3, 1]
    # keep 1: only the best in sim is validated; the rest follow by sim success.
    assert np.argsort(-combine(sim, ood, "filter", keep=1.0)).tolist() == [1, 3, 0, 2]


def test_rank_mean_combination_and_bad_arguments():
    sim, ood = [0.9, 1.0, 0.5], [0.2, 0.3, 0.1]
    # ranks by sim (desc): 2, 1, 3; by OOD (asc): 2, 3, 1; means 2, 2, 2: all tied, OOD breaks the tie.
    assert np.argsort(-combine(sim, ood, "rank_mean")).tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match="combine.method: unknown 'sum'"):
        combine(sim, ood, "sum")
    with pytest.raises(ValueError, match="3 sim success values but 2 OOD scores"):
        combine(sim, ood[:2])


def test_behaviour_ood_is_lower_for_the_policy_that_matches_the_recording():
    """Recorded actions come from policy A (acting on noisy sensor readings); A's score is ~0, B's is not."""
    a, b = tiny_policy(0), tiny_policy(1)
    with torch.no_grad():
        a.head.mean.bias.add_(0.5)  # make A's behaviour clearly its own (not near B's untrained ~0 output)
    obs = {OBS_STATE: torch.randn(200, 5)}
    with torch.no_grad():
        recorded = a.act(obs, deterministic=True).actions
    score_a, score_b = behaviour_ood_score(a, obs, recorded), behaviour_ood_score(b, obs, recorded)
    assert score_a < 1e-10
    assert score_b > 1e-3
    # Padded chunk steps are left out: padding every frame but one leaves that frame's gap only.
    pad = torch.ones(200, 1, dtype=torch.bool)
    pad[0] = False
    one = behaviour_ood_score(b, {OBS_STATE: obs[OBS_STATE][:1]}, recorded[:1])
    assert behaviour_ood_score(b, obs, recorded, action_is_pad=pad) == pytest.approx(one, rel=1e-5)


def test_input_ood_grows_with_the_shift_from_the_training_statistics():
    policy = tiny_policy(0)
    train = torch.randn(5000, 5) * 2.0 + 1.0
    policy.normalizer.update({OBS_STATE: train})
    same = input_ood_score(policy, {OBS_STATE: torch.randn(1000, 5) * 2.0 + 1.0})
    shifted = input_ood_score(policy, {OBS_STATE: torch.randn(1000, 5) * 2.0 + 5.0})
    assert same == pytest.approx(1.0, abs=0.15)  # E[z^2] = 1 in distribution
    assert shifted > 4.0  # (4 / 2)^2 + 1 = 5


def test_a_candidate_that_does_not_fit_is_named():
    policy = tiny_policy(0, state_dim=5, action_dim=3)
    check_policy_fits(policy, "ok", state_dim=5, action_dim=3, chunk=1)
    with pytest.raises(ValueError, match=r"candidate bc-7dof: action_dim 3 \(the data has 7\)"):
        check_policy_fits(policy, "bc-7dof", state_dim=5, action_dim=7)
    with pytest.raises(ValueError, match=r"state_dim 5 \(the data has 26\).*chunk 1 \(the env runs chunks of 4\)"):
        check_policy_fits(policy, "x", state_dim=26, action_dim=3, chunk=4)
