"""The fine-tuning terms of the shared objective: distill, anchor, bc, DAgger, critic warm-up."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from test_head_contract import small_options
from test_ppo_update import synthetic_rollout

from robopolicy.algorithms.ppo import PPO, PPOConfig
from robopolicy.critic import CriticConfig, ValueCritic
from robopolicy.encoders import EncoderConfig
from robopolicy.heads import HEADS
from robopolicy.objective import BCTerm, DAggerTerm, DivergenceTerm, ForwardCache, MiniBatch, PPOClipTerm
from robopolicy.policy import Policy, PolicyConfig


def make_policy(head: str, seed: int = 0) -> Policy:
    torch.manual_seed(seed)
    return Policy(PolicyConfig(head=head, head_options=small_options(head), encoder=EncoderConfig([16], "tanh"),
                               state_dim=3, action_dim=2, chunk=2))


def batch_for(policy: Policy):
    critic = ValueCritic(3, CriticConfig(hidden_sizes=[16]))
    ppo = PPO(policy, critic, PPOConfig(n_steps=16, batch_size=64, n_epochs=1), num_envs=4)
    return ppo.prepare(synthetic_rollout(policy)), critic


@pytest.mark.parametrize("kind", ["reverse_kl", "forward_kl", "js"])
@pytest.mark.parametrize("head", sorted(HEADS))
def test_distill_from_an_identical_teacher_has_zero_loss_and_gradient(head, kind):
    student = make_policy(head)
    batch, critic = batch_for(student)
    term = DivergenceTerm(copy.deepcopy(student), kind)
    loss, _ = term(ForwardCache(student, critic, batch))
    loss.backward()
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-5)
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads, "the divergence must reach the student's weights"
    # KL is closed form, so its gradient at teacher == student is exactly zero; JS is a Monte-Carlo
    # estimate whose gradient is zero only in expectation (its sampled points move with the student).
    bound = 1e-4 if kind != "js" else 5e-2
    assert max(float(g.abs().max()) for g in grads) < bound


@pytest.mark.parametrize("head", sorted(HEADS))
def test_distill_moves_the_student_toward_a_different_teacher(head):
    student, teacher = make_policy(head, seed=0), make_policy(head, seed=1)
    batch, critic = batch_for(student)
    term = DivergenceTerm(teacher, "reverse_kl")
    opt = torch.optim.Adam(student.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss, _ = term(ForwardCache(student, critic, batch))
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 0.0
    assert float(term(ForwardCache(student, critic, batch))[0].detach()) < 0.5 * first
    assert not any(p.requires_grad for p in teacher.parameters()), "the teacher must stay frozen"


def test_dagger_labels_are_the_teachers_actions():
    student, teacher = make_policy("gaussian", seed=0), make_policy("gaussian", seed=1)
    batch, critic = batch_for(student)
    term, opt = DAggerTerm(teacher), torch.optim.Adam(student.parameters(), lr=1e-2)
    for _ in range(200):
        loss, _ = term(ForwardCache(student, critic, batch))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        want = teacher.act(batch.obs, deterministic=True).actions
        got = student.act(batch.obs, deterministic=True).actions
    assert (got - want).abs().mean() < 0.1


def test_bc_term_draws_a_fresh_demo_batch_each_call():
    policy = make_policy("gaussian")
    batch, critic = batch_for(policy)
    calls = []

    class Demos:
        def next(self):
            calls.append(1)
            return {"obs": {"observation.state": torch.randn(8, 3)}, "actions": torch.zeros(8, 2, 2)}

    loss, _ = BCTerm(Demos())(ForwardCache(policy, critic, batch))
    assert torch.isfinite(loss) and len(calls) == 1


def test_critic_warmup_trains_only_the_critic_then_the_actor():
    policy = make_policy("gaussian")
    critic = ValueCritic(3, CriticConfig(hidden_sizes=[16]))
    ppo = PPO(policy, critic, PPOConfig(n_steps=16, batch_size=16, n_epochs=2, critic_warmup_updates=1), num_envs=4)
    actor0 = [p.detach().clone() for p in policy.parameters()]
    critic0 = [p.detach().clone() for p in critic.parameters()]
    metrics = ppo.update(synthetic_rollout(policy))
    assert metrics["ppo/critic_warmup"] == 1.0 and "loss/pg" not in metrics
    assert all(torch.equal(a, b) for a, b in zip(actor0, policy.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(critic0, critic.parameters()))
    metrics = ppo.update(synthetic_rollout(policy))
    assert metrics["ppo/critic_warmup"] == 0.0
    assert any(not torch.equal(a, b) for a, b in zip(actor0, policy.parameters()))


def test_actor_lr_ramps_over_its_first_updates_after_the_critic_warmup():
    policy = make_policy("gaussian")
    critic = ValueCritic(3, CriticConfig(hidden_sizes=[16]))
    cfg = PPOConfig(n_steps=16, batch_size=16, n_epochs=1, learning_rate=1e-3, critic_learning_rate=1e-2,
                    critic_warmup_updates=1, actor_lr_warmup_updates=4)
    ppo = PPO(policy, critic, cfg, num_envs=4)
    ppo.update(synthetic_rollout(policy))  # critic warm-up: the actor does not step
    actor_lrs, critic_lrs = [], []
    for _ in range(5):
        actor_lrs.append(ppo.update(synthetic_rollout(policy))["ppo/lr"])
        critic_lrs.append(ppo.optimizer.param_groups[1]["lr"])
    assert actor_lrs == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])
    assert critic_lrs == pytest.approx([1e-2] * 5)


def test_bc_coefficient_decays_per_update():
    policy = make_policy("gaussian")
    critic = ValueCritic(3, CriticConfig(hidden_sizes=[16]))

    class Demos:
        def next(self):
            return {"obs": {"observation.state": torch.randn(8, 3)}, "actions": torch.zeros(8, 2, 2)}

    cfg = PPOConfig(n_steps=16, batch_size=64, n_epochs=1, bc_coef=0.5, bc_decay=0.5)
    ppo = PPO(policy, critic, cfg, num_envs=4, demos=Demos())
    assert ppo.update(synthetic_rollout(policy))["ppo/bc_coef"] == pytest.approx(0.25)
    assert ppo.update(synthetic_rollout(policy))["ppo/bc_coef"] == pytest.approx(0.125)


@pytest.mark.parametrize(
    ("overrides", "needs"),
    [({"distill_coef": 1.0}, "teacher"), ({"anchor_coef": 0.1}, "init_policy"), ({"bc_coef": 0.1}, "dataset")],
)
def test_a_term_without_its_input_is_named(overrides, needs):
    policy = make_policy("gaussian")
    with pytest.raises(ValueError, match=needs):
        PPO(policy, ValueCritic(3, CriticConfig(hidden_sizes=[16])), PPOConfig(**overrides), num_envs=1)


def test_unknown_divergence_kind_is_named():
    with pytest.raises(ValueError, match="distill_kind"):
        PPOConfig(distill_kind="wasserstein")


def test_per_decision_clip_rises_from_the_first_decision_to_the_last():
    """DPPO's schedule: eps_1 at the first decision, clip_coef at the last; a ratio of 1.05 on every decision is
    clipped (no gradient) where eps < 0.05 and passes where eps > 0.05; None keeps one clip for all."""
    term = PPOClipTerm(0.2, clip_coef_first=0.01, clip_schedule_rate=3.0)
    eps = term.clip_per_decision(5)
    assert eps[0].item() == pytest.approx(0.01) and eps[-1].item() == pytest.approx(0.2)
    assert (eps.diff() > 0).all() and eps[2].item() < 0.105  # convex: the middle stays near the first
    assert PPOClipTerm(0.2).clip_per_decision(5) == 0.2 and term.clip_per_decision(1) == 0.2
    n, s = 4, 5
    old = torch.zeros(n, s)

    class Cache:
        mb = MiniBatch(obs={}, trace=torch.zeros(n), logp=old, advantages=torch.tensor([1.0, 2.0, 3.0, 4.0]),
                       returns=torch.zeros(n), value=torch.zeros(n))
        logp = torch.full((n, s), math.log(1.05), requires_grad=True)

    _, stats = term(Cache())
    (grad,) = torch.autograd.grad(term(Cache())[0], Cache.logp)
    passes = (grad.abs() > 0).all(0)
    assert passes.tolist() == (eps > 0.05).tolist() == [False, False, False, True, True]
    assert stats["clip_frac"].item() == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="algo.clip_coef_first"):
        PPOConfig(clip_coef=0.05, clip_coef_first=0.1)
