"""Gaussian head: log-probs against torch.distributions, divergences, imitation."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from robopolicy.heads import GaussianHead, GaussianHeadConfig, build_head


@pytest.mark.parametrize("squash", ["tanh", "clip"])
@pytest.mark.parametrize("state_dependent_std", [False, True])
def test_log_prob_matches_torch_distributions(squash, state_dependent_std):
    torch.manual_seed(0)
    head = GaussianHead(8, action_dim=3, chunk=2,
                        config=GaussianHeadConfig(squash=squash, state_dependent_std=state_dependent_std,
                                                  log_std_init=-0.5, init_gain=1.0))
    feat = torch.randn(5, 8)
    s = head.sample(feat)
    assert s.actions.shape == (5, 2, 3) and s.trace.shape == (5, 2, 3) and s.logp.shape == (5, 1)
    mean, log_std = head.distribution(feat)
    base = Normal(mean, log_std.exp())
    if squash == "tanh":
        ref = TransformedDistribution(base, [TanhTransform()]).log_prob(torch.tanh(s.trace))
    else:
        ref = base.log_prob(s.trace)
    assert torch.allclose(s.logp.squeeze(1), ref.flatten(1).sum(-1), atol=1e-4)
    assert torch.allclose(head.log_prob(feat, s.trace), s.logp, atol=1e-6)
    assert s.actions.abs().max() <= 1.0


def test_deterministic_sample_is_squashed_mean():
    head = GaussianHead(4, 2, 1, GaussianHeadConfig(squash="tanh", init_gain=1.0))
    feat = torch.randn(3, 4)
    s = head.sample(feat, deterministic=True)
    assert torch.allclose(s.actions, torch.tanh(head.distribution(feat)[0]))


def test_divergence_zero_with_itself_and_matches_monte_carlo_when_shifted():
    torch.manual_seed(1)
    student = GaussianHead(4, 2, 1, GaussianHeadConfig(init_gain=1.0, log_std_init=-0.3))
    teacher = GaussianHead(4, 2, 1, GaussianHeadConfig(init_gain=1.0, log_std_init=0.2))
    teacher.load_state_dict(student.state_dict() | {"log_std": torch.tensor([0.2, -0.1])})
    with torch.no_grad():
        teacher.mean.bias += 0.5
    feat = torch.randn(6, 4)
    s = student.sample(feat)
    for kind in ("reverse_kl", "forward_kl", "js"):
        assert student.divergence(feat, s.trace, student, feat, kind).abs().max() < 1e-5
    kl = student.divergence(feat, s.trace, teacher, feat, "reverse_kl").squeeze(1)
    # Monte Carlo: E_{x~student}[log p_s(x) - log p_t(x)]
    m_s, ls_s = student.distribution(feat)
    m_t, ls_t = teacher.distribution(feat)
    x = Normal(m_s, ls_s.exp()).sample((20000,))
    mc = (Normal(m_s, ls_s.exp()).log_prob(x) - Normal(m_t, ls_t.exp()).log_prob(x)).flatten(2).sum(-1).mean(0)
    assert torch.allclose(kl, mc, rtol=0.05, atol=0.01)
    fwd = student.divergence(feat, s.trace, teacher, feat, "forward_kl")
    js = student.divergence(feat, s.trace, teacher, feat, "js")
    assert (fwd > 0).all()
    # JS is a Monte Carlo estimate: bounded by log 2 and close to a 20k-sample estimate on average.
    pt, ps = Normal(m_t, ls_t.exp()), Normal(m_s, ls_s.exp())

    def half(p):
        y = p.sample((20000,))
        lp, lq = ps.log_prob(y).flatten(2).sum(-1), pt.log_prob(y).flatten(2).sum(-1)
        la = lp if p is ps else lq
        return (la - (torch.logaddexp(lp, lq) - torch.log(torch.tensor(2.0)))).mean(0)

    js_ref = 0.5 * half(ps) + 0.5 * half(pt)
    assert (js < torch.log(torch.tensor(2.0))).all()
    assert js.mean().item() == pytest.approx(js_ref.mean().item(), abs=0.03)


def test_imitation_loss_fits_targets():
    torch.manual_seed(0)
    head = GaussianHead(4, 2, 1, GaussianHeadConfig(squash="tanh"))
    feat = torch.randn(64, 4)
    target = torch.tanh(0.5 * feat[:, :2]).unsqueeze(1)  # reachable: linear pre-squash mean
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        head.imitation_loss(feat, target).backward()
        opt.step()
    pred = head.sample(feat, deterministic=True).actions
    assert (pred - target).abs().mean() < 0.05


def test_unknown_head_and_option_are_named():
    with pytest.raises(ValueError, match="unknown head 'difusion'"):
        build_head("difusion", 4, 2, 1, {})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['log_std_inti'\]"):
        build_head("gaussian", 4, 2, 1, {"log_std_inti": 0.0})
