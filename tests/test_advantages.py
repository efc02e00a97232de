"""GAE against hand-computed 3-step examples (gamma 0.9, lambda 0.5)."""

from __future__ import annotations

import pytest
import torch

from robopolicy.advantages import gae, group_relative

R = torch.tensor([[1.0], [2.0], [3.0]])
V = torch.tensor([[0.5], [1.0], [1.5]])


def run(next_value, terminated, truncated):
    term = torch.tensor(terminated).view(3, 1)
    trunc = torch.tensor(truncated).view(3, 1)
    return gae(R, V, torch.tensor(next_value).view(3, 1), term, term | trunc, 0.9, 0.5)


def test_gae_no_done():
    # delta = [1 + .9*1 - .5, 2 + .9*1.5 - 1, 3 + .9*2 - 1.5] = [1.4, 2.35, 3.3]
    # A2 = 3.3; A1 = 2.35 + .45*3.3 = 3.835; A0 = 1.4 + .45*3.835 = 3.12575
    adv, ret = run([1.0, 1.5, 2.0], [False] * 3, [False] * 3)
    assert adv.squeeze(1).tolist() == pytest.approx([3.12575, 3.835, 3.3])
    assert ret.squeeze(1).tolist() == pytest.approx([3.62575, 4.835, 4.8])


def test_gae_termination_cuts_bootstrap_and_trace():
    # delta1 = 2 - 1 = 1 (no bootstrap); A1 = 1 (no carry from t=2); A0 = 1.4 + .45*1 = 1.85
    adv, _ = run([1.0, 99.0, 2.0], [False, True, False], [False] * 3)
    assert adv.squeeze(1).tolist() == pytest.approx([1.85, 1.0, 3.3])


def test_gae_truncation_bootstraps_from_final_value():
    # next_value[1] = V(final_obs) = 4: delta1 = 2 + .9*4 - 1 = 4.6; A1 = 4.6 (trace cut); A0 = 1.4 + .45*4.6
    adv, _ = run([1.0, 4.0, 2.0], [False] * 3, [False, True, False])
    assert adv.squeeze(1).tolist() == pytest.approx([3.47, 4.6, 3.3])


def test_gae_chunk_discount_per_step():
    # a chunk that ran 2 env steps is discounted by gamma**2 = .81: delta0 = 1 + .81*1 - .5 = 1.31
    gamma = torch.tensor([[0.81], [0.9], [0.9]])
    adv, _ = gae(R, V, torch.tensor([[1.0], [1.5], [2.0]]), torch.zeros(3, 1, dtype=torch.bool),
                 torch.zeros(3, 1, dtype=torch.bool), gamma, 0.0)
    assert adv[0, 0].item() == pytest.approx(1.31)


def test_group_relative_sums_to_zero_per_group():
    returns = torch.tensor([1.0, 2.0, 3.0, 10.0, 10.0, 40.0])
    group = torch.tensor([0, 0, 0, 1, 1, 1])
    adv = group_relative(returns, group)
    assert adv[:3].sum().item() == pytest.approx(0.0, abs=1e-6)
    assert adv[3:].sum().item() == pytest.approx(0.0, abs=1e-6)
    assert adv[2] > adv[1] > adv[0]
