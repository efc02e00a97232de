"""DiT-style transformer denoiser: shapes, conditioning, and the heads' exact log-probs with it."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal

from robopolicy.heads.denoisers import TransformerDenoiser
from robopolicy.heads.diffusion import DiffusionHead, DiffusionHeadConfig
from robopolicy.heads.flow import FlowHead, FlowHeadConfig
from robopolicy.policy import Policy, PolicyConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


DIT = {"denoiser": "transformer", "dit_width": 32, "dit_depth": 2, "dit_heads": 4}


def perturb(module: torch.nn.Module, std: float = 0.05) -> None:
    """adaLN-Zero starts every gate at 0; nudge all weights so conditioning paths are exercised."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn_like(p))


def test_shapes_and_every_input_matters():
    torch.manual_seed(0)
    net = TransformerDenoiser(feat_dim=6, chunk=4, action_dim=3, width=32, depth=2, heads=4)
    x, t, feat = torch.randn(5, 12), torch.randint(0, 100, (5,)), torch.randn(5, 6)
    out = net(x, t, feat)
    assert out.shape == (5, 12) and torch.isfinite(out).all()
    perturb(net)
    out = net(x, t, feat)
    assert not torch.allclose(net(x, t + 7, feat), out)
    assert not torch.allclose(net(x, t, feat + 1), out)
    assert not torch.allclose(net(x + 1, t, feat), out)
    # Tokens are action steps: permuting the chunk's steps changes the output (learned positions), and a
    # row's output depends only on its own row (no mixing across the batch).
    assert torch.allclose(net(x[:2], t[:2], feat[:2]), out[:2], atol=1e-5)
    with pytest.raises(ValueError, match="dit_width"):
        TransformerDenoiser(6, 4, 3, width=30, heads=4)


def test_adaln_zero_blocks_start_as_identity():
    torch.manual_seed(0)
    net = TransformerDenoiser(feat_dim=6, chunk=4, action_dim=3, width=32, depth=2, heads=4)
    h, c = torch.randn(5, 4, 32), torch.randn(5, 32)
    for block in net.blocks:
        assert torch.equal(block(h, c), h)


@pytest.mark.parametrize("ft_steps", [None, 3])
def test_diffusion_log_prob_matches_sample_and_torch_normal(ft_steps):
    torch.manual_seed(0)
    head = DiffusionHead(6, action_dim=2, chunk=3, config=DiffusionHeadConfig(ft_steps=ft_steps, eta=0.5, **DIT))
    assert isinstance(head.denoiser, TransformerDenoiser)
    perturb(head)
    feat = torch.randn(5, 6)
    with torch.no_grad():
        out = head.sample(feat)
    assert out.actions.shape == (5, 3, 2) and out.trace.shape == (5, 11, 3, 2)
    lp = head.log_prob(feat, out.trace)
    assert torch.allclose(lp, out.logp, atol=1e-4)
    k, s = 10, head.num_decisions
    ref = torch.stack([
        Normal(head.step_mean(feat, out.trace[:, i], i), head.step_std[i]).log_prob(out.trace[:, i + 1]).flatten(1).sum(-1)
        for i in range(k - s, k)
    ], dim=1)
    assert torch.allclose(lp, ref, atol=1e-4)
    lp.sum().backward()
    assert head.denoiser.blocks[0].ada[-1].weight.grad.abs().sum() > 0


def test_flow_log_prob_matches_sample_and_torch_normal():
    torch.manual_seed(1)
    head = FlowHead(6, action_dim=2, chunk=3, config=FlowHeadConfig(num_steps=5, noise_std=0.2, **DIT))
    assert isinstance(head.velocity, TransformerDenoiser)
    perturb(head)
    feat = torch.randn(4, 6)
    with torch.no_grad():
        s = head.sample(feat)
        chain = s.trace.flatten(2)
        ref = torch.stack([Normal(*head.step_distribution(feat, chain[:, k], k)).log_prob(chain[:, k + 1]).sum(-1)
                           for k in range(5)], dim=1)
    assert torch.allclose(head.log_prob(feat, s.trace), s.logp, atol=1e-4)
    assert torch.allclose(ref, s.logp, atol=1e-4)


@pytest.mark.parametrize("head", ["diffusion", "flow"])
def test_transformer_denoiser_trains_and_reloads(tmp_path, head):
    torch.manual_seed(0)
    options = DIT | ({"num_inference_steps": 5} if head == "diffusion" else {"num_steps": 5})
    policy = Policy(PolicyConfig(head=head, head_options=options, state_dim=4, action_dim=2, chunk=3))
    obs = {"observation.state": torch.randn(64, 4)}
    target = torch.tanh(obs["observation.state"][:, :2]).unsqueeze(1).expand(64, 3, 2)
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = policy.head.imitation_loss(policy.features(obs), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) < 0.7 * sum(losses[:10])
    loaded = Policy.from_pretrained(policy.save_pretrained(tmp_path / "p"))
    torch.manual_seed(3)
    a = policy.act(obs, deterministic=True).actions
    torch.manual_seed(3)
    assert torch.equal(loaded.act(obs, deterministic=True).actions, a)


def test_unknown_denoiser_is_rejected():
    with pytest.raises(ValueError, match="denoiser"):
        DiffusionHead(6, 2, 3, DiffusionHeadConfig(denoiser="unet"))
    with pytest.raises(ValueError, match="denoiser"):
        FlowHead(6, 2, 3, FlowHeadConfig(denoiser="unet"))


def test_policy_config_group_builds_the_transformer_denoiser():
    from robopolicy.cli import compose
    from robopolicy.train_run import policy_config_for

    cfg = compose("train", ["env=constant_reward", "policy=diffusion_dit"])
    env = type("Env", (), {"state_dim": 2, "action_dim": 1, "chunk": 4, "action_low": torch.tensor([-1.0]),
                           "action_high": torch.tensor([1.0])})()
    policy = Policy(policy_config_for(cfg, env))
    assert isinstance(policy.head.denoiser, TransformerDenoiser) and len(policy.head.denoiser.blocks) == 2


@pytest.mark.parametrize("head", ["diffusion", "flow"])
def test_ppo_update_with_the_transformer_denoiser(head):
    """The head contract's PPO path: first-minibatch ratio 1, finite metrics, weights move."""
    import envs
    from robopolicy.algorithms.ppo import PPO, PPOConfig
    from robopolicy.critic import CriticConfig, ValueCritic
    from robopolicy.objective import ForwardCache, PPOClipTerm
    from robopolicy.rollout import LocalRollouts

    torch.manual_seed(0)
    env = envs.make_gym_vec_env("robopolicy/ConstantReward-v0", num_envs=2, chunk=2)
    steps = {"num_inference_steps": 4, "num_train_timesteps": 20} if head == "diffusion" else {"num_steps": 4}
    policy = Policy(PolicyConfig(head=head, head_options=DIT | steps, state_dim=env.state_dim,
                                 action_dim=env.action_dim, chunk=env.chunk, action_low=env.action_low.tolist(),
                                 action_high=env.action_high.tolist()))
    critic = ValueCritic(env.state_dim, CriticConfig(hidden_sizes=[16]))
    ppo = PPO(policy, critic, PPOConfig(n_steps=8, batch_size=8, n_epochs=2), num_envs=2)
    rollout = LocalRollouts(env, n_steps=8).collect(policy)
    _, first = PPOClipTerm(0.2)(ForwardCache(policy, critic, ppo.prepare(rollout)))
    assert float(first["ratio_mean"]) == pytest.approx(1.0, abs=1e-5)
    before = [p.detach().clone() for p in policy.head.parameters()]
    metrics = ppo.update(rollout)
    assert all(torch.isfinite(torch.tensor(v)) for k, v in metrics.items() if k != "ppo/log_std_mean")
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.head.parameters(), strict=True))
    env.close()
