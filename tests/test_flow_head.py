"""Flow head: shapes, log-probs against torch.distributions, per-step KL, bimodal BC."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch.distributions import Normal

from robopolicy.heads.flow import FlowHead, FlowHeadConfig
from robopolicy.heads.gaussian import GaussianHead, GaussianHeadConfig

B, F_DIM, H, A, K = 5, 6, 2, 3, 4


def make_head(noise: str = "learned", **kw) -> FlowHead:
    cfg = FlowHeadConfig(num_steps=K, noise=noise, hidden_sizes=[32, 32], time_embed_dim=8, **kw)
    return FlowHead(F_DIM, action_dim=A, chunk=H, config=cfg)


@pytest.mark.parametrize("noise", ["learned", "scheduled"])
@pytest.mark.parametrize("deterministic", [False, True])
def test_sample_shapes_and_range(noise, deterministic):
    torch.manual_seed(0)
    head = make_head(noise, noise_std=0.3)
    s = head.sample(torch.randn(B, F_DIM), deterministic=deterministic)
    assert head.num_decisions == K
    assert s.actions.shape == (B, H, A) and s.trace.shape == (B, K + 1, H, A) and s.logp.shape == (B, K)
    assert s.actions.abs().max() <= 1.0 and torch.isfinite(s.logp).all()
    assert torch.equal(s.actions, s.trace[:, -1].clamp(-1, 1))


def test_zero_velocity_chain_is_a_random_walk_with_known_logp():
    # Hand-computed case: v = 0, so mean_k = x_k, and deterministic sampling leaves x_0 in place with
    # logp_k = sum_{H*A} (-log std - 1/2 log 2 pi) = -6 (log 0.3 + 0.9189...).
    head = make_head("scheduled", noise_std=0.3)
    last = head.velocity[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    s = head.sample(torch.randn(B, F_DIM), deterministic=True)
    assert torch.equal(s.trace[:, 0], s.trace[:, -1])
    expected = -H * A * (torch.log(torch.tensor(0.3)) + 0.5 * torch.log(torch.tensor(2 * torch.pi)))
    assert torch.allclose(s.logp, expected.expand(B, K), atol=1e-5)


@pytest.mark.parametrize("noise", ["learned", "scheduled"])
def test_log_prob_matches_sample_and_torch_distributions(noise):
    torch.manual_seed(1)
    head = make_head(noise, noise_std=0.2)
    if noise == "learned":  # make the std depend on feat and t so the test can see mistakes there
        torch.nn.init.normal_(head.noise_net.weight, std=0.5)
    feat = torch.randn(B, F_DIM)
    with torch.no_grad():
        s = head.sample(feat)
        logp = head.log_prob(feat, s.trace)
        chain = s.trace.flatten(2)
        ref = torch.stack([Normal(*head.step_distribution(feat, chain[:, k], k)).log_prob(chain[:, k + 1]).sum(-1)
                           for k in range(K)], dim=1)
    assert torch.allclose(logp, s.logp, atol=1e-4)
    assert torch.allclose(ref, s.logp, atol=1e-4)
    # Entropy is the closed form of each transition: sum over H*A of Normal(mean, std).entropy().
    ent = head.entropy(feat, s.trace)
    ref_ent = torch.stack([Normal(*head.step_distribution(feat, chain[:, k], k)).entropy().sum(-1)
                           for k in range(K)], dim=1)
    assert ent.shape == (B, K) and torch.allclose(ent, ref_ent, atol=1e-4)
    with pytest.raises(ValueError, match=r"\(B, K\+1, H, A\)"):
        head.log_prob(feat, s.trace[:, 1:])


def test_gradients_reach_noise_net_only_in_learned_mode():
    torch.manual_seed(2)
    feat = torch.randn(B, F_DIM)
    head = make_head("learned")
    with torch.no_grad():
        trace = head.sample(feat).trace
    head.log_prob(feat, trace).sum().backward()
    assert head.noise_net.weight.grad.abs().sum() > 0 and head.noise_net.bias.grad.abs().sum() > 0
    assert head.velocity[0].weight.grad.abs().sum() > 0

    head = make_head("scheduled")
    assert head.noise_net is None
    assert not any("noise" in name for name, _ in head.named_parameters())
    with torch.no_grad():
        trace = head.sample(feat).trace
    head.log_prob(feat, trace).sum().backward()
    assert head.velocity[0].weight.grad.abs().sum() > 0


def test_divergence_zero_with_itself_and_matches_monte_carlo_when_shifted():
    torch.manual_seed(3)
    student = make_head("learned")
    teacher = copy.deepcopy(student)
    with torch.no_grad():
        teacher.velocity[-1].bias += 0.5  # mean shift 0.5 dt per dimension
        teacher.noise_net.bias += 0.4  # and a larger std
    feat = torch.randn(B, F_DIM)
    with torch.no_grad():
        trace = student.sample(feat).trace
        for kind in ("reverse_kl", "forward_kl", "js"):
            d = student.divergence(feat, trace, student, feat, kind)
            assert d.shape == (B, K) and d.abs().max() < 1e-5, kind
        kl = student.divergence(feat, trace, teacher, feat, "reverse_kl")
        # Monte Carlo per step: E_{x ~ student step}[log p_s(x) - log p_t(x)] at the student's x_k.
        chain = trace.flatten(2)
        mc = []
        for k in range(K):
            p_s = Normal(*student.step_distribution(feat, chain[:, k], k))
            p_t = Normal(*teacher.step_distribution(feat, chain[:, k], k))
            x = p_s.sample((20000,))
            mc.append((p_s.log_prob(x) - p_t.log_prob(x)).sum(-1).mean(0))
        mc = torch.stack(mc, dim=1)
        assert (kl > 0.05).all()
        assert torch.allclose(kl, mc, rtol=0.05, atol=0.01)
        fwd = student.divergence(feat, trace, teacher, feat, "forward_kl")
        js = student.divergence(feat, trace, teacher, feat, "js")
    assert (fwd > 0).all() and not torch.allclose(fwd, kl)
    assert js.shape == (B, K) and (js.mean() > 0) and (js < torch.log(torch.tensor(2.0))).all()


def test_divergence_rejects_mismatched_teacher():
    head = make_head()
    feat = torch.randn(B, F_DIM)
    trace = head.sample(feat).trace
    other = FlowHead(F_DIM, A, H, FlowHeadConfig(num_steps=K + 1, hidden_sizes=[8]))
    with pytest.raises(ValueError, match="num_steps"):
        head.divergence(feat, trace, other, feat, "reverse_kl")
    with pytest.raises(TypeError, match="FlowHead teacher"):
        head.divergence(feat, trace, GaussianHead(F_DIM, A, H), feat, "reverse_kl")


def _bimodal_batch(n: int) -> torch.Tensor:
    """Targets +0.7 or -0.7 with equal probability, as (n, H=1, A=1)."""
    return (torch.randint(0, 2, (n, 1, 1)).float() * 2 - 1) * 0.7


def test_bc_reproduces_both_modes_where_gaussian_averages_them():
    torch.manual_seed(0)
    feat = torch.ones(256, 4)
    flow = FlowHead(4, 1, 1, FlowHeadConfig(num_steps=10, hidden_sizes=[64, 64], time_embed_dim=16))
    gauss = GaussianHead(4, 1, 1, GaussianHeadConfig(init_gain=1.0))
    for head in (flow, gauss):
        opt = torch.optim.Adam(head.parameters(), lr=3e-3)
        for _ in range(400):
            opt.zero_grad()
            head.imitation_loss(feat, _bimodal_batch(256)).backward()
            opt.step()
    with torch.no_grad():
        a = flow.sample(torch.ones(200, 4), deterministic=True).actions.flatten()
        g = gauss.sample(torch.ones(200, 4), deterministic=True).actions.flatten()
    assert ((a - 0.7).abs() < 0.25).float().mean() >= 0.25
    assert ((a + 0.7).abs() < 0.25).float().mean() >= 0.25
    assert (a.abs() < 0.3).float().mean() < 0.2
    # The Gaussian's max-likelihood mean is the average of the modes: it reproduces neither.
    assert gauss.distribution(torch.ones(1, 4))[0].abs().item() < 0.15
    assert ((g.abs() - 0.7).abs() < 0.25).float().mean() == 0


def test_num_noise_samples_and_config_errors():
    torch.manual_seed(4)
    head = make_head(num_noise_samples=4)
    loss = head.imitation_loss(torch.randn(B, F_DIM), torch.rand(B, H, A) * 2 - 1)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    with pytest.raises(ValueError, match="unknown noise mode 'sheduled'"):
        FlowHeadConfig(noise="sheduled")
    with pytest.raises(ValueError, match=r"actions must be \(B, H, A\)"):
        head.imitation_loss(torch.randn(B, F_DIM), torch.zeros(B, A))


@pytest.mark.parametrize("noise", ["learned", "scheduled"])
def test_ft_steps_makes_only_the_last_steps_noisy_decisions(noise):
    """With ft_steps=S the first K - S Euler steps are deterministic and the last S are the decisions: the
    stored log-probs, log_prob and entropy cover those S steps and agree with torch.distributions."""
    torch.manual_seed(5)
    s_dec = 2
    head = make_head(noise, noise_std=0.3, ft_steps=s_dec)
    if noise == "learned":
        torch.nn.init.normal_(head.noise_net.weight, std=0.5)
    feat = torch.randn(B, F_DIM)
    with torch.no_grad():
        s = head.sample(feat)
        chain = s.trace.flatten(2)
        for k in range(K - s_dec):  # deterministic steps: x_{k+1} is exactly the Euler mean
            mean, _ = head.step_distribution(feat, chain[:, k], k)
            assert torch.allclose(chain[:, k + 1], mean, atol=1e-6)
        mean, _ = head.step_distribution(feat, chain[:, K - 1], K - 1)
        assert (chain[:, K] - mean).abs().max() > 1e-3  # the last step is noisy
        ref = torch.stack([Normal(*head.step_distribution(feat, chain[:, k], k)).log_prob(chain[:, k + 1]).sum(-1)
                           for k in range(K - s_dec, K)], dim=1)
        logp, ent = head.log_prob_and_entropy(feat, s.trace)
    assert head.num_decisions == s_dec and s.logp.shape == (B, s_dec)
    assert torch.allclose(s.logp, ref, atol=1e-4) and torch.allclose(logp, ref, atol=1e-4)
    ref_ent = torch.stack([Normal(*head.step_distribution(feat, chain[:, k], k)).entropy().sum(-1)
                           for k in range(K - s_dec, K)], dim=1)
    assert torch.allclose(ent, ref_ent, atol=1e-4)
    # Distillation compares the student's S decisions with the teacher's same steps, whatever the teacher's S.
    teacher = make_head(noise, noise_std=0.3)  # the same weights, every step a decision
    teacher.load_state_dict(head.state_dict())
    assert head.divergence(feat, s.trace, teacher, feat, "reverse_kl").abs().max() < 1e-5
    assert head.divergence(feat, s.trace, teacher, feat, "reverse_kl").shape == (B, s_dec)
    with pytest.raises(ValueError, match=r"FlowHeadConfig.ft_steps=5 must be in \[1, num_steps=4\]"):
        make_head(ft_steps=5)


def test_ft_steps_leaves_the_deterministic_policy_bit_for_bit():
    """Evaluation runs the noiseless chain: choosing which steps are decisions must not change a single bit of it
    (a float-level difference flips borderline evaluation episodes)."""
    cfg = FlowHeadConfig(num_steps=10, noise_std=0.3, hidden_sizes=[32, 32], time_embed_dim=8)  # dt = 0.1 is inexact
    head = FlowHead(F_DIM, action_dim=A, chunk=H, config=cfg)
    part = FlowHead(F_DIM, action_dim=A, chunk=H, config=dataclasses.replace(cfg, ft_steps=4))
    part.load_state_dict(head.state_dict())
    feat = torch.randn(B, F_DIM)
    torch.manual_seed(6)
    full = head.sample(feat, deterministic=True).trace
    torch.manual_seed(6)
    assert torch.equal(part.sample(feat, deterministic=True).trace, full)
