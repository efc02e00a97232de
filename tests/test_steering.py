"""Latent-noise steering (``steer: true`` on diffusion and flow heads, robopolicy.heads.steering): the one decision is
the chain's starting noise; the chain and the encoder stay frozen; at init it is the pretrained policy sampled as
usual; it can select a mode of a BC policy; checkpoints load into it; and what it does not do is refused by name."""

from __future__ import annotations

import pytest
import torch
from test_head_contract import small_options

import envs
from robopolicy.algorithms.ppo import PPO, PPOConfig
from robopolicy.checkpoint import load_policy
from robopolicy.cli import compose
from robopolicy.critic import CriticConfig, ValueCritic
from robopolicy.encoders import EncoderConfig
from robopolicy.heads import build_head
from robopolicy.objective import ForwardCache, PPOClipTerm
from robopolicy.policy import Policy, PolicyConfig
from robopolicy.rollout import LocalRollouts
from robopolicy.train_run import run_training

STEERABLE = ("diffusion", "flow")


def _pair(name: str, feat_dim: int = 8, action_dim: int = 3, chunk: int = 4, **steer_options):
    """A pretrained-like head and its steered copy with the same chain weights."""
    base = build_head(name, feat_dim, action_dim, chunk, small_options(name))
    steered = build_head(name, feat_dim, action_dim, chunk,
                         {**small_options(name), "steer": True, "steer_hidden_sizes": [16], **steer_options})
    steered.load_state_dict({**steered.state_dict(), **base.state_dict()})
    return base, steered


@pytest.mark.parametrize("name", STEERABLE)
def test_at_init_a_steered_head_is_the_pretrained_chain_from_its_usual_noise(name):
    torch.manual_seed(0)
    base, steered = _pair(name)
    feat = torch.randn(6, 8)
    with torch.no_grad():
        torch.manual_seed(1)
        usual = base.sample(feat, deterministic=True)  # x ~ N(0, I), then the chain without injected noise
        torch.manual_seed(1)
        sample = steered.sample(feat)
        assert torch.equal(sample.actions, usual.actions) and torch.equal(sample.trace, usual.trace)
        assert steered.num_decisions == 1 and sample.logp.shape == (6, 1)
        assert torch.allclose(steered.log_prob(feat, sample.trace), sample.logp, atol=1e-5)
        # deterministic acting starts from the steering mean, 0 at init
        assert torch.equal(steered.sample(feat, deterministic=True).trace[:, 0], torch.zeros(6, 4, 3))


@pytest.mark.parametrize("name", STEERABLE)
def test_only_the_steering_trains_and_the_policy_freezes_its_encoder(name):
    policy = Policy(PolicyConfig(head=name, head_options={**small_options(name), "steer": True},
                                 encoder=EncoderConfig([16], "tanh"), state_dim=5, action_dim=2, chunk=3))
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("head.steering.") for n in trainable)
    sample = policy.act({"observation.state": torch.randn(4, 5)})
    policy.log_prob({"observation.state": torch.randn(4, 5)}, sample.trace).sum().backward()
    assert all(p.grad is None for n, p in policy.named_parameters() if not n.startswith("head.steering."))


@pytest.mark.parametrize("name", STEERABLE)
def test_steering_selects_the_rewarded_mode_of_a_bimodal_bc_policy(name):
    """BC on targets at -0.6 and +0.6 (half each) gives a policy that succeeds half the time on "act > 0"; steering
    its starting noise by policy gradient lifts that above 90% while the chain's weights do not move."""
    torch.manual_seed(0)
    base = build_head(name, 4, 1, 1, {**small_options(name), "hidden_sizes": [64, 64]})
    opt = torch.optim.Adam(base.parameters(), lr=3e-3)
    for _ in range(300):
        feat = torch.randn(128, 4)
        target = torch.where(torch.rand(128, 1, 1) < 0.5, -0.6, 0.6)
        loss = base.imitation_loss(feat, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    steered = build_head(name, 4, 1, 1, {**small_options(name), "hidden_sizes": [64, 64], "steer": True,
                                        "steer_hidden_sizes": [32]})
    steered.load_state_dict({**steered.state_dict(), **base.state_dict()})
    chain_before = {k: v.clone() for k, v in steered.state_dict().items() if not k.startswith("steering.")}

    def success(head) -> float:
        with torch.no_grad():
            return float((head.sample(torch.randn(1000, 4)).actions > 0).float().mean())

    start = success(steered)
    assert 0.3 < start < 0.7, f"the BC policy should pick either mode, picked the rewarded one {start:.0%}"
    opt = torch.optim.Adam([p for p in steered.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(30):
        feat = torch.randn(256, 4)
        with torch.no_grad():
            sample = steered.sample(feat)
        reward = (sample.actions > 0).float().flatten()
        advantage = reward - reward.mean()
        loss = -(advantage * steered.log_prob(feat, sample.trace).squeeze(-1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert success(steered) > 0.9, f"steering lifted 'act > 0' from {start:.0%} to only {success(steered):.0%}"
    assert all(torch.equal(v, steered.state_dict()[k]) for k, v in chain_before.items())


@pytest.mark.parametrize("name", STEERABLE)
@pytest.mark.parametrize("steer_chain", [False, True])
def test_ppo_first_minibatch_has_ratio_one_for_a_steered_head(name, steer_chain):
    torch.manual_seed(0)
    env = envs.make_gym_vec_env("robopolicy/ConstantReward-v0", num_envs=2, chunk=2)
    options = {**small_options(name), "steer": True, "steer_chain": steer_chain}
    policy = Policy(PolicyConfig(head=name, head_options=options,
                                 encoder=EncoderConfig([16], "tanh"), state_dim=env.state_dim,
                                 action_dim=env.action_dim, chunk=env.chunk,
                                 action_low=env.action_low.tolist(), action_high=env.action_high.tolist()))
    critic = ValueCritic(env.state_dim, CriticConfig(hidden_sizes=[16]))
    ppo = PPO(policy, critic, PPOConfig(n_steps=8, batch_size=8, n_epochs=2), num_envs=2)
    try:
        rollout = LocalRollouts(env, n_steps=8).collect(policy)
        assert rollout.logp.shape[-1] == (1 + 4 if steer_chain else 1)  # the noise, then the chain's 4 steps
        batch = ppo.prepare(rollout)
        _, first = PPOClipTerm(0.2)(ForwardCache(policy, critic, batch))
        assert float(first["ratio_mean"]) == pytest.approx(1.0, abs=1e-5)
        assert float(first["clip_frac"]) == 0.0
        chain = {k: v.clone() for k, v in policy.state_dict().items() if k.startswith(("head.", "encoder."))
                 and not k.startswith("head.steering.")}
        steering = {k: v.clone() for k, v in policy.state_dict().items() if k.startswith("head.steering.")}
        ppo.update(rollout)
        assert any(not torch.equal(v, policy.state_dict()[k]) for k, v in steering.items())
        chain_moved = any(not torch.equal(v, policy.state_dict()[k]) for k, v in chain.items())
        assert chain_moved == steer_chain
    finally:
        env.close()


@pytest.mark.parametrize("name", STEERABLE)
def test_a_bc_checkpoint_loads_with_steering_started_fresh_and_round_trips(name, tmp_path):
    torch.manual_seed(0)
    cfg = PolicyConfig(head=name, head_options=small_options(name), encoder=EncoderConfig([16], "tanh"),
                       state_dim=5, action_dim=2, chunk=3)
    Policy(cfg).save_pretrained(tmp_path / "bc")
    steered = Policy.from_pretrained(tmp_path / "bc", head_overrides={"steer": True})
    assert torch.equal(steered.head.steering.mean_net[-1].weight, torch.zeros_like(steered.head.steering.mean_net[-1].weight))
    with torch.no_grad():
        steered.head.steering.log_std.fill_(-0.5)
        obs = {"observation.state": torch.randn(4, 5)}
        sample = steered.act(obs)
        steered.save_pretrained(tmp_path / "ft")
        reloaded = Policy.from_pretrained(tmp_path / "ft")
        assert reloaded.head.steering is not None
        assert torch.allclose(reloaded.log_prob(obs, sample.trace), sample.logp, atol=1e-5)


@pytest.mark.parametrize("name", STEERABLE)
def test_divergence_between_steered_heads_and_its_refusals(name):
    torch.manual_seed(0)
    base, steered = _pair(name)
    feat = torch.randn(5, 8)
    trace = steered.sample(feat).trace
    for kind in ("reverse_kl", "forward_kl"):
        assert torch.allclose(steered.divergence(feat, trace, steered, feat, kind), torch.zeros(5, 1), atol=1e-6)
    cls = type(steered).__name__
    with pytest.raises(ValueError, match=rf"^{cls}.divergence: the student and the teacher must both be steered"):
        steered.divergence(feat, trace, base, feat, "reverse_kl")


@pytest.mark.parametrize("name", STEERABLE)
def test_what_a_steered_head_does_not_do_is_named(name):
    _, steered = _pair(name)
    cls = type(steered).__name__
    with pytest.raises(ValueError, match=rf"^{cls}.imitation_loss: not with steer=true, whose one decision is the "
                                         r"starting noise and whose chain is frozen"):
        steered.imitation_loss(torch.randn(2, 8), torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match=rf"^{cls}.set_executed: not with steer=true: its one decision, the starting "
                                         r"noise, moves every action of the chunk"):
        steered.set_executed(2)
    steered.set_executed(4)  # every action runs: nothing to refuse
    if name == "diffusion":
        with pytest.raises(ValueError, match=r"^DiffusionHead.set_min_std: not with steer=true"):
            steered.set_min_std(0.1)


def test_finetuning_with_steer_moves_only_the_steering(tmp_path):
    base = ["env=arm_reach", "env.chunk=2", "env.num_envs=2", "policy=diffusion", "policy.head_options.num_inference_steps=4",
            "algo.n_steps=32", "algo.batch_size=32", "total_steps=256", "logger=none", "eval_episodes=0",
            f"runs_dir={tmp_path}"]
    start = run_training(compose("train", [*base, "name=pre"]), show_progress=False).run_dir
    cfg = compose("train", [*base, "name=ft", f"init_policy={start}", "+init_head_options.steer=true",
                            "algo.learning_rate=1e-2"])
    before, after = load_policy(start), load_policy(run_training(cfg, show_progress=False).run_dir)
    assert after.head.steering is not None and after.num_decisions == 1
    moved = {k for k, v in after.state_dict().items() if k not in before.state_dict() or not torch.equal(v, before.state_dict()[k])}
    assert moved and all(k.startswith("head.steering.") for k in moved), sorted(moved)


@pytest.mark.parametrize("name", STEERABLE)
def test_steer_chain_at_init_is_the_unsteered_head_with_the_noise_as_a_first_decision(name):
    torch.manual_seed(0)
    base, both = _pair(name, steer_chain=True)
    feat = torch.randn(6, 8)
    with torch.no_grad():
        torch.manual_seed(1)
        usual = base.sample(feat)  # the chain's exploration noise included
        torch.manual_seed(1)
        sample = both.sample(feat)
        assert torch.equal(sample.trace, usual.trace)
        assert both.num_decisions == 1 + base.num_decisions and sample.logp.shape == (6, 1 + base.num_decisions)
        assert torch.allclose(sample.logp[:, 1:], usual.logp, atol=1e-5)
        assert torch.allclose(both.log_prob(feat, sample.trace), sample.logp, atol=1e-5)
        logp, entropy = both.log_prob_and_entropy(feat, sample.trace)
        assert entropy.shape == logp.shape == sample.logp.shape
        assert torch.allclose(both.divergence(feat, sample.trace, both, feat, "reverse_kl"), torch.zeros_like(logp),
                              atol=1e-5)
    policy = Policy(PolicyConfig(head=name, head_options={**small_options(name), "steer": True, "steer_chain": True},
                                 encoder=EncoderConfig([16], "tanh"), state_dim=5, action_dim=2, chunk=3))
    assert all(p.requires_grad for p in policy.parameters())  # chain, encoder and steering all train
    with pytest.raises(ValueError, match=r"HeadConfig.steer_chain=true needs steer=true$"):
        build_head(name, 8, 3, 4, {**small_options(name), "steer_chain": True})
