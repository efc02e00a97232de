"""Diffusion head: chain shapes, exact per-step log-probs, closed-form KLs, bimodal imitation."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler
from torch.distributions import Normal

from robopolicy.heads.diffusion import DiffusionHead, DiffusionHeadConfig
from robopolicy.heads.gaussian import GaussianHead, GaussianHeadConfig


def small_head(**kw) -> DiffusionHead:
    cfg = DiffusionHeadConfig(hidden_sizes=[32, 32], **kw)
    return DiffusionHead(6, action_dim=2, chunk=3, config=cfg)


@pytest.mark.parametrize("ft_steps", [None, 3])
@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
def test_sample_shapes(ft_steps, prediction_type):
    torch.manual_seed(0)
    head = small_head(ft_steps=ft_steps, prediction_type=prediction_type)
    feat = torch.randn(5, 6)
    s_exp = 10 if ft_steps is None else 3
    assert head.num_decisions == s_exp
    for deterministic in (False, True):
        out = head.sample(feat, deterministic=deterministic)
        assert out.actions.shape == (5, 3, 2) and out.actions.abs().max() <= 1.0
        assert out.trace.shape == (5, 11, 3, 2) and out.logp.shape == (5, s_exp)
        assert torch.isfinite(out.logp).all() and torch.isfinite(out.trace).all()
        assert torch.equal(out.actions, out.trace[:, -1].clamp(-1, 1))
    assert head.entropy(feat, out.trace).shape == (5, s_exp)


def test_step_mean_matches_diffusers_ddim_step():
    """With eta = 0 the chain mean is exactly DDIMScheduler.step(use_clipped_model_output=True)."""
    torch.manual_seed(0)
    head = small_head()
    ref = DDIMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2", clip_sample=True)
    ref.set_timesteps(10)
    feat, x = torch.randn(4, 6), 2.0 * torch.randn(4, 3, 2)
    for i, t in enumerate(ref.timesteps):
        eps = head.denoiser(x.flatten(1), torch.full((4,), int(t)), feat).view_as(x)
        expected = ref.step(eps, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
        assert torch.allclose(head.step_mean(feat, x, i), expected, atol=1e-5)


@pytest.mark.parametrize("ft_steps", [None, 3])
def test_log_prob_matches_sample_and_torch_normal(ft_steps):
    torch.manual_seed(0)
    head = small_head(ft_steps=ft_steps, eta=0.5)
    feat = torch.randn(5, 6)
    with torch.no_grad():
        out = head.sample(feat)
    lp = head.log_prob(feat, out.trace)
    assert torch.allclose(lp, out.logp, atol=1e-4)
    # Independent: per-step Normal from the public step_mean and step_std.
    k, s = 10, head.num_decisions
    ref = torch.stack([
        Normal(head.step_mean(feat, out.trace[:, i], i), head.step_std[i]).log_prob(out.trace[:, i + 1]).flatten(1).sum(-1)
        for i in range(k - s, k)
    ], dim=1)
    assert torch.allclose(lp, ref, atol=1e-4)
    # Differentiable w.r.t. the denoiser.
    lp.sum().backward()
    assert head.denoiser.net[-1].weight.grad.abs().sum() > 0
    # eta = 0.5 gives a DDPM-like std above min_std on early steps, min_std on the last one.
    assert head.step_std[0] > 0.1 and head.step_std[-1] == pytest.approx(0.1)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
def test_divergence_zero_with_itself_and_matches_monte_carlo_when_shifted(prediction_type):
    torch.manual_seed(1)
    student = small_head(ft_steps=4, prediction_type=prediction_type)
    teacher = small_head(ft_steps=4, prediction_type=prediction_type)
    teacher.load_state_dict(student.state_dict())
    with torch.no_grad():
        # Unclipped, d mu / d eps = sqrt(1 - abar_prev) - sqrt(abar_prev (1 - abar_t) / abar_t) (small near x_0)
        # and d mu / d x0 = sqrt(abar_prev) - sqrt(abar_t (1 - abar_prev) / (1 - abar_t)): scale the shift to match.
        teacher.denoiser.net[-1].bias += 1.0 if prediction_type == "epsilon" else 0.1
    feat = torch.randn(6, 6)
    with torch.no_grad():
        out = student.sample(feat)
    for kind in ("reverse_kl", "forward_kl", "js"):
        d = student.divergence(feat, out.trace, student, feat, kind)
        assert d.shape == (6, 4) and d.abs().max() < 1e-5
    kl = student.divergence(feat, out.trace, teacher, feat, "reverse_kl")
    # Monte Carlo: E_{x ~ student step}[log p_s(x) - log p_t(x)] at each student state x_k.
    mc = []
    for i in range(6, 10):
        ps = Normal(student.step_mean(feat, out.trace[:, i], i), student.step_std[i])
        pt = Normal(teacher.step_mean(feat, out.trace[:, i], i), teacher.step_std[i])
        y = ps.sample((4000,))
        mc.append((ps.log_prob(y) - pt.log_prob(y)).flatten(2).sum(-1).mean(0))
    mc = torch.stack(mc, dim=1).detach()
    assert (kl > 0.01).all()
    assert torch.allclose(kl, mc, rtol=0.1, atol=0.05)
    fwd = student.divergence(feat, out.trace, teacher, feat, "forward_kl")
    js = student.divergence(feat, out.trace, teacher, feat, "js")
    assert torch.allclose(fwd, kl, rtol=1e-4)  # equal stds -> KL is symmetric
    # JS is a Monte-Carlo estimate: bounded by log 2, positive on average.
    assert js.shape == (6, 4) and js.mean() > 0.01 and (js <= torch.log(torch.tensor(2.0)) + 1e-6).all()


def test_divergence_rejects_other_schedules():
    student = small_head()
    with pytest.raises(ValueError, match="teacher schedule differs"):
        student.divergence(torch.randn(2, 6), student.sample(torch.randn(2, 6)).trace,
                           small_head(num_inference_steps=5), torch.randn(2, 6), "reverse_kl")
    with pytest.raises(TypeError, match="GaussianHead"):
        student.divergence(torch.randn(2, 6), student.sample(torch.randn(2, 6)).trace,
                           GaussianHead(6, 2, 3), torch.randn(2, 6), "reverse_kl")


def _fit(head, feat, targets, steps: int, lr: float) -> None:
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    for _ in range(steps):
        idx = torch.randint(0, targets.shape[0], (256,))
        opt.zero_grad()
        head.imitation_loss(feat.expand(256, -1), targets[idx]).backward()
        opt.step()


def test_bc_reproduces_both_modes_where_gaussian_averages_them():
    """Learning test: targets +-0.7 with equal probability for one constant observation."""
    torch.manual_seed(0)
    feat = torch.ones(1, 4)
    targets = (0.7 * (2 * torch.randint(0, 2, (1024,)) - 1).float()).view(-1, 1, 1)
    head = DiffusionHead(4, 1, 1, DiffusionHeadConfig(hidden_sizes=[64, 64], num_noise_samples=4))
    _fit(head, feat, targets, steps=600, lr=1e-2)  # passes on seeds 0-3 with margin (>= 0.34 per mode)
    with torch.no_grad():
        a = head.sample(feat.expand(200, -1)).actions.flatten()
    near_pos, near_neg = ((a - 0.7).abs() < 0.25).float().mean(), ((a + 0.7).abs() < 0.25).float().mean()
    middle = (a.abs() < 0.3).float().mean()
    assert near_pos >= 0.25 and near_neg >= 0.25 and middle < 0.2, (near_pos, near_neg, middle)

    gauss = GaussianHead(4, 1, 1, GaussianHeadConfig(init_gain=1.0))
    _fit(gauss, feat, targets, steps=400, lr=1e-2)
    with torch.no_grad():
        mean = gauss.sample(feat, deterministic=True).actions.item()
    assert abs(mean) < 0.15  # unimodal maximum likelihood averages the two modes


def test_num_noise_samples_and_bad_prediction_type():
    torch.manual_seed(0)
    head = small_head(num_noise_samples=4)
    feat, actions = torch.randn(5, 6), torch.rand(5, 3, 2) * 2 - 1
    loss = head.imitation_loss(feat, actions)
    assert loss.dim() == 0 and torch.isfinite(loss)
    out = head.sample(feat)
    assert out.actions.shape == (5, 3, 2) and out.trace.shape == (5, 11, 3, 2) and out.logp.shape == (5, 10)
    with pytest.raises(ValueError, match="'v_prediction'"):
        small_head(prediction_type="v_prediction")
    with pytest.raises(ValueError, match="ft_steps=11"):
        small_head(ft_steps=11)
