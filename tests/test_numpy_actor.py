"""The NumPy actor samples what ``Policy.act`` samples (same torch random stream, float32 rounding apart),
sees the live weights, refuses every policy it does not reproduce, and PPO's stored log-probs still match."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

from envs.gym_vec import make_gym_vec_env
from robopolicy.encoders import EncoderConfig
from robopolicy.encoders.config import ImageEncoderConfig
from robopolicy.numpy_actor import NumpyGaussianActor
from robopolicy.policy import Policy, PolicyConfig
from robopolicy.rollout import LocalRollouts
from robopolicy.types import OBS_STATE


def _policy(squash="clip", hidden=(16, 16), activation="relu", chunk=3, bounded=True, normalize=True, **head):
    torch.manual_seed(0)
    cfg = PolicyConfig(state_dim=5, action_dim=2, chunk=chunk, normalize_obs=normalize,
                       encoder=EncoderConfig(list(hidden), activation),
                       head_options={"squash": squash, "log_std_init": -0.7, "init_gain": 1.0, **head},
                       action_low=[-2.0, 0.0] if bounded else [], action_high=[2.0, 1.0] if bounded else [])
    policy = Policy(cfg)
    policy.normalizer.update({OBS_STATE: torch.randn(64, 5) * 3 + 1})  # statistics that change the input
    return policy


def _both(policy: Policy, obs, deterministic: bool, seed: int = 5):
    with torch.inference_mode():
        torch.manual_seed(seed)
        want = policy.act(obs, deterministic=deterministic)
        after_torch = torch.rand(1)
        torch.manual_seed(seed)
        got = NumpyGaussianActor.for_policy(policy).act(obs, deterministic=deterministic)
        after_numpy = torch.rand(1)
    assert torch.equal(after_torch, after_numpy)  # the same number of draws from the global stream
    return want, got


@pytest.mark.parametrize("squash", ["clip", "tanh"])
@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize(("hidden", "activation", "chunk", "bounded", "normalize"), [
    ((16, 16), "relu", 3, True, True), ((8,), "tanh", 1, False, True), ((), "relu", 2, True, False)])
@pytest.mark.parametrize("batch", [1, 6])
def test_numpy_actor_samples_what_policy_act_samples(squash, deterministic, hidden, activation, chunk, bounded,
                                                    normalize, batch):
    policy = _policy(squash, hidden, activation, chunk, bounded, normalize)
    obs = {OBS_STATE: torch.randn(batch, 5) * 4}
    obs[OBS_STATE][0, 0], obs[OBS_STATE][-1, 1] = 500.0, -500.0  # past the normalizer's clip on both sides
    before = obs[OBS_STATE].clone()
    want, got = _both(policy, obs, deterministic)
    for name in ("actions", "trace", "logp"):
        a, b = getattr(want, name), getattr(got, name)
        assert a.shape == b.shape and a.dtype == b.dtype == torch.float32, name
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5, msg=name)
    assert torch.equal(obs[OBS_STATE], before)  # the observation is read, never written
    # The stored trace's log-prob under the torch policy is the stored logp: PPO's first ratio is 1.
    torch.testing.assert_close(policy.log_prob(obs, got.trace), got.logp, rtol=1e-5, atol=1e-4)


def test_numpy_actor_reads_the_live_weights_and_statistics():
    policy = _policy()
    actor = NumpyGaussianActor.for_policy(policy)
    obs = {OBS_STATE: torch.randn(3, 5)}
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.3)  # an optimizer step writes in place
    policy.normalizer.update({OBS_STATE: torch.randn(64, 5) * 10})
    with torch.inference_mode():
        torch.manual_seed(1)
        want = policy.act(obs)
        torch.manual_seed(1)
        got = actor.act(obs)
    torch.testing.assert_close(got.actions, want.actions, rtol=1e-5, atol=1e-5)


def test_numpy_actor_declines_policies_it_does_not_reproduce():
    assert NumpyGaussianActor.for_policy(_policy()) is not None
    declined = {
        "diffusion head": Policy(PolicyConfig(state_dim=5, action_dim=2, chunk=2, head="diffusion")),
        "state-dependent std": _policy(state_dependent_std=True),
        "elu": _policy(activation="elu"),
        "float64": _policy().double(),
        "camera": Policy(PolicyConfig(state_dim=5, action_dim=2, encoder=EncoderConfig(
            [16], image=ImageEncoderConfig(cameras=["front"], shape=[3, 32, 32])))),
    }
    hooked = _policy()
    hooked.head.mean.register_forward_hook(lambda *a: None)
    declined["hooked layer"] = hooked
    for name, policy in declined.items():
        assert NumpyGaussianActor.for_policy(policy) is None, name


def test_rollout_through_the_numpy_actor_stores_log_probs_the_policy_reproduces():
    env = make_gym_vec_env("Pendulum-v1", num_envs=2, seed=0)
    space = gym.make("Pendulum-v1").action_space
    policy = Policy(PolicyConfig(state_dim=3, action_dim=1, encoder=EncoderConfig([32, 32], "tanh"),
                                 action_low=space.low.tolist(), action_high=space.high.tolist()))
    assert NumpyGaussianActor.for_policy(policy) is not None
    rollout = LocalRollouts(env, n_steps=16, seed=0).collect(policy)
    env.close()
    obs = {OBS_STATE: rollout.obs[OBS_STATE].reshape(32, 3)}
    with torch.no_grad():
        logp = policy.log_prob(obs, rollout.trace.reshape(32, 1, 1))
    torch.testing.assert_close(logp, rollout.logp.reshape(32, 1), rtol=1e-5, atol=1e-4)
    assert rollout.actions.abs().max() <= 2.0  # Pendulum's torque bound, through the action scaler
