"""The acting shortcuts (forward without Module.__call__, state-only encoder, flat Gaussian sampling)
compute exactly what the plain module calls computed, and hooks still fire."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robopolicy.encoders import EncoderConfig
from robopolicy.heads.gaussian import LOG_SQRT_2PI, GaussianHead, GaussianHeadConfig, tanh_log_det
from robopolicy.policy import Policy, PolicyConfig
from robopolicy.types import OBS_STATE


def _old_sample(head: GaussianHead, feat: torch.Tensor, deterministic: bool):
    """GaussianHead.sample before the flat rewrite (module calls, (B, H, A) all the way)."""
    b, c = feat.shape[0], head.config
    mean = head.mean(feat).view(b, head.chunk, head.action_dim)
    if c.state_dependent_std:
        log_std = head.log_std_layer(feat).view(b, head.chunk, head.action_dim).clamp(c.min_log_std, c.max_log_std)
    else:
        log_std = head.log_std.view(1, head.chunk, head.action_dim).clamp(c.min_log_std, c.max_log_std).expand(b, -1, -1)
    noise = torch.zeros_like(mean) if deterministic else torch.randn_like(mean)
    pre = torch.addcmul(mean, log_std.exp(), noise)
    logp = (-0.5 * noise.square() - log_std).flatten(1).sum(-1, keepdim=True) - LOG_SQRT_2PI * head.chunk * head.action_dim
    if c.squash == "tanh":
        logp = logp - tanh_log_det(pre).flatten(1).sum(-1, keepdim=True)
    return head.squash(pre), pre, logp


@pytest.mark.parametrize("squash", ["clip", "tanh"])
@pytest.mark.parametrize("state_dependent_std", [False, True])
@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("batch,chunk", [(1, 1), (5, 4), (33, 2)])
def test_gaussian_sample_is_bitwise_the_old_sample(squash, state_dependent_std, deterministic, batch, chunk):
    torch.manual_seed(0)
    cfg = GaussianHeadConfig(state_dependent_std=state_dependent_std, squash=squash, log_std_init=-0.5, init_gain=1.0)
    head = GaussianHead(16, 3, chunk, cfg)
    feat = torch.randn(batch, 16)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            torch.manual_seed(7)
            got = head.sample(feat, deterministic=deterministic)
            torch.manual_seed(7)
            actions, trace, logp = _old_sample(head, feat, deterministic)
        assert got.actions.shape == got.trace.shape == (batch, chunk, 3) and got.logp.shape == (batch, 1)
        assert torch.equal(got.actions, actions) and torch.equal(got.trace, trace) and torch.equal(got.logp, logp)
        assert torch.equal(head.log_prob(feat, got.trace), head._log_prob(trace, *_old_distribution(head, feat)))


def _old_distribution(head: GaussianHead, feat: torch.Tensor):
    b, c = feat.shape[0], head.config
    mean = head.mean(feat).view(b, head.chunk, head.action_dim)
    if c.state_dependent_std:
        return mean, head.log_std_layer(feat).view(b, head.chunk, head.action_dim).clamp(c.min_log_std, c.max_log_std)
    return mean, head.log_std.view(1, head.chunk, head.action_dim).clamp(c.min_log_std, c.max_log_std).expand(b, -1, -1)


def _policy() -> Policy:
    torch.manual_seed(0)
    return Policy(PolicyConfig(state_dim=5, action_dim=2, chunk=3, encoder=EncoderConfig([16, 16], "relu"),
                               action_low=[-2.0, 0.0], action_high=[2.0, 1.0]))


def test_act_equals_plain_module_calls_and_keeps_obs_untouched():
    policy = _policy()
    policy.normalizer.update({OBS_STATE: torch.randn(50, 5) * 3 + 1})
    obs = {OBS_STATE: torch.randn(4, 5) * 3, "other": torch.zeros(4)}
    before = obs[OBS_STATE].clone()
    with torch.inference_mode():
        torch.manual_seed(3)
        got = policy.act(obs)
        torch.manual_seed(3)
        norm = policy.normalizer.stats["observation__state"]
        feat = nn.Sequential.forward(policy.encoder.net, norm(obs[OBS_STATE]))
        actions, trace, logp = _old_sample(policy.head, feat, False)
    assert torch.equal(obs[OBS_STATE], before) and set(obs) == {OBS_STATE, "other"}
    assert torch.equal(got.actions, policy.scaler.to_env(actions)) and torch.equal(got.trace, trace)
    assert torch.equal(got.logp, logp)
    assert torch.equal(policy.encoder(obs), policy.encoder.features_and_estimate(obs)[0])  # state-only shortcut


def test_hooks_on_acting_modules_still_fire():
    policy = _policy()
    modules = [policy.normalizer, policy.normalizer.stats["observation__state"], policy.encoder, policy.encoder.net,
               policy.head.mean]
    seen: list[int] = []
    for i, m in enumerate(modules):
        m.register_forward_hook(lambda mod, inp, out, i=i: seen.append(i))
    policy.act({OBS_STATE: torch.randn(2, 5)})
    assert sorted(seen) == list(range(len(modules)))
    seen.clear()
    handle = nn.modules.module.register_module_forward_hook(lambda mod, inp, out: seen.append(-1))
    try:
        _policy().act({OBS_STATE: torch.randn(2, 5)})
    finally:
        handle.remove()
    assert len(seen) >= 5  # a global hook sees every module again
