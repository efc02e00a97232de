"""PPO update invariants on a synthetic rollout."""

from __future__ import annotations

import math

import pytest
import torch

from robopolicy.algorithms.ppo import PPO, PPOConfig
from robopolicy.critic import CriticConfig, ValueCritic
from robopolicy.encoders import EncoderConfig
from robopolicy.objective import ForwardCache, MiniBatch, PPOClipTerm
from robopolicy.policy import Policy, PolicyConfig
from robopolicy.types import OBS_STATE, Rollout


def synthetic_rollout(policy: Policy, T: int = 16, B: int = 4) -> Rollout:
    obs = {OBS_STATE: torch.randn(T, B, 3)}
    with torch.no_grad():
        s = policy.act({OBS_STATE: obs[OBS_STATE].reshape(T * B, 3)})
    shape = lambda x: x.reshape(T, B, *x.shape[1:])
    zeros = torch.zeros(T, B, dtype=torch.bool)
    return Rollout(obs=obs, actions=shape(s.actions), trace=shape(s.trace), logp=shape(s.logp),
                   reward=torch.randn(T, B), terminated=zeros, truncated=zeros,
                   chunk_steps=torch.ones(T, B, dtype=torch.int64), policy_version=torch.zeros(T, B, dtype=torch.int64),
                   final_obs={OBS_STATE: torch.randn(T, B, 3)})


def build(**overrides):
    torch.manual_seed(0)
    policy = Policy(PolicyConfig(state_dim=3, action_dim=2, encoder=EncoderConfig([16], "tanh")))
    critic = ValueCritic(3, CriticConfig(hidden_sizes=[16]))
    cfg = PPOConfig(n_steps=16, batch_size=16, n_epochs=2, **overrides)
    return policy, critic, PPO(policy, critic, cfg, num_envs=4)


def test_first_minibatch_has_ratio_one_and_no_clipping():
    policy, critic, ppo = build()
    batch = ppo.prepare(synthetic_rollout(policy))
    _, metrics = PPOClipTerm(0.2)(ForwardCache(policy, critic, batch))
    assert metrics["ratio_mean"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["clip_frac"] == 0.0
    assert metrics["approx_kl"] == pytest.approx(0.0, abs=1e-7)


def test_clipped_surrogate_matches_hand_computation():
    # ratios e^{log 1.5} = 1.5 and e^{log 0.5} = 0.5 with advantages +1 and -1, eps 0.2:
    # min(1.5*1, 1.2*1) = 1.2 ; min(0.5*-1, 0.8*-1) = -0.8 ; loss = -(1.2 - 0.8)/2 = -0.2
    class Fixed:
        mb = MiniBatch(obs={}, trace=torch.zeros(2), logp=torch.zeros(2, 1),
                       advantages=torch.tensor([1.0, -1.0]), returns=torch.zeros(2), value=torch.zeros(2))
        logp = torch.log(torch.tensor([[1.5], [0.5]]))

    loss, metrics = PPOClipTerm(0.2, normalize_advantage=False)(Fixed())
    assert loss.item() == pytest.approx(-0.2)
    assert metrics["clip_frac"] == 1.0


def test_step_kl_sums_the_decisions_kl():
    # Two policy steps of three decisions, log-ratio 0.1 everywhere: k3 = e^0.1 - 1 - 0.1 per decision.
    class Fixed:
        mb = MiniBatch(obs={}, trace=torch.zeros(2), logp=torch.zeros(2, 3),
                       advantages=torch.tensor([1.0, -1.0]), returns=torch.zeros(2), value=torch.zeros(2))
        logp = torch.full((2, 3), 0.1)

    _, metrics = PPOClipTerm(0.2, normalize_advantage=False)(Fixed())
    k3 = math.exp(0.1) - 1 - 0.1
    assert metrics["approx_kl"].item() == pytest.approx(k3, rel=1e-5)
    assert metrics["approx_kl_step"].item() == pytest.approx(3 * k3, rel=1e-5)


def test_update_changes_weights_and_reports_metrics():
    policy, _critic, ppo = build()
    before = [p.detach().clone() for p in policy.parameters()]
    metrics = ppo.update(synthetic_rollout(policy))
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    assert metrics["ppo/minibatches"] == 8  # 64 transitions / 16 per minibatch * 2 epochs
    assert all(torch.isfinite(torch.tensor(v)) for k, v in metrics.items() if k != "ppo/log_std_mean")


def test_kl_early_stop_cuts_epochs():
    policy, _critic, ppo = build(target_kl=1e-9, learning_rate=1e-2)
    metrics = ppo.update(synthetic_rollout(policy))
    assert metrics["ppo/early_stop"] == 1.0 and metrics["ppo/minibatches"] < 8


@pytest.mark.parametrize(("key", "value"), [("gamma", 1.5), ("n_steps", 0), ("clip_coef", -0.1)])
def test_invalid_hyperparameters_are_named(key, value):
    with pytest.raises(ValueError, match=rf"algo.{key}: invalid value {value}"):
        PPOConfig(**{key: value})


def diffusion_build(**overrides):
    torch.manual_seed(0)
    policy = Policy(PolicyConfig(state_dim=3, action_dim=2, encoder=EncoderConfig([16], "tanh"), head="diffusion",
                                 head_options={"num_inference_steps": 4, "ft_steps": 2, "min_std": 0.2,
                                               "hidden_sizes": [16]}))
    critic = ValueCritic(3, CriticConfig(hidden_sizes=[16]))
    return policy, critic, PPO(policy, critic, PPOConfig(n_steps=16, batch_size=16, n_epochs=1, **overrides), num_envs=4)


def test_min_std_anneals_between_rollouts_and_resumes():
    policy, critic, ppo = diffusion_build(min_std_final=0.1)
    metrics = ppo.update(synthetic_rollout(policy), progress=0.5)
    assert metrics["ppo/min_std"] == pytest.approx(0.15)
    # DDIM (eta 0) has no posterior noise, so every step's std is the floor; the saved config follows it.
    assert torch.allclose(policy.head.step_std, torch.full((4,), 0.15))
    assert policy.config.head_options["min_std"] == pytest.approx(0.15)
    # The next rollout is scored under the floor it acted with: its first minibatch has ratio 1.
    batch = ppo.prepare(synthetic_rollout(policy))
    _, first = PPOClipTerm(0.2)(ForwardCache(policy, critic, batch))
    assert first["ratio_mean"] == pytest.approx(1.0, abs=1e-6)
    # A resumed run rebuilds the head at its initial floor; the algorithm state restores the schedule.
    state = ppo.state_dict()
    policy2, _, ppo2 = diffusion_build(min_std_final=0.1)
    ppo2.load_state_dict(state)
    assert policy2.head.config.min_std == pytest.approx(0.15)
    assert ppo2.update(synthetic_rollout(policy2), progress=1.0)["ppo/min_std"] == pytest.approx(0.1)


def test_min_std_final_needs_a_head_with_a_floor():
    with pytest.raises(ValueError, match="algo.min_std_final: GaussianHead has no exploration floor"):
        build(min_std_final=0.1)
    with pytest.raises(ValueError, match="algo.min_std_final: invalid value 0.0"):
        PPOConfig(min_std_final=0.0)


def test_behaviour_neg_logp_estimates_the_token_chains_entropy_and_skips_masked_steps():
    from robopolicy.algorithms.ppo import behaviour_neg_logp
    from robopolicy.heads.tokens import TokenHead, TokenHeadConfig

    torch.manual_seed(0)
    head = TokenHead(4, action_dim=2, chunk=2, config=TokenHeadConfig(num_bins=6, d_model=16, num_heads=2))
    feat = torch.randn(1, 4).expand(20000, 4)
    with torch.no_grad():
        s = head.sample(feat)
        # The chain's entropy: the expected sum of the exact per-token entropies along sampled prefixes.
        exact = head.entropy(feat, s.trace).sum(-1).mean().item()
    batch = MiniBatch(obs={}, trace=s.trace, logp=s.logp, advantages=torch.zeros(20000), returns=torch.zeros(20000),
                      value=torch.zeros(20000))
    assert exact > 1.0  # a spread policy, so a wrong sign or a missing sum over decisions shows
    assert behaviour_neg_logp(batch) == pytest.approx(exact, rel=0.02)
    # Steps outside the pg term (an operator's action) do not count: here only the first two rows.
    logp = torch.tensor([[-1.0, -2.0], [-3.0, -1.0], [-50.0, -50.0]])
    masked = MiniBatch(obs={}, trace=torch.zeros(3, 2), logp=logp, advantages=torch.zeros(3), returns=torch.zeros(3),
                       value=torch.zeros(3), extras={"pg_mask": torch.tensor([1.0, 1.0, 0.0])})
    assert behaviour_neg_logp(masked) == pytest.approx(3.5)
