"""The PPO hot path's shortcuts compute exactly what the plain torch code they replace computes.

MLP (direct functional calls) vs nn.Sequential, the clip / Adam / zero_grad helpers vs torch's, the
per-epoch gather vs per-minibatch gathers, and the Gaussian head's clamp-then-broadcast log-std.
"""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import save_file
from test_ppo_update import build, synthetic_rollout
from torch import nn

import robopolicy.algorithms.ppo as ppo_mod
from robopolicy.algorithms.fast_step import adam_step_fn, clip_grad_norm_fn, zero_grad_fn
from robopolicy.algorithms.ppo import minibatch_epochs
from robopolicy.encoders import EncoderConfig, mlp
from robopolicy.encoders.state import MLP
from robopolicy.heads.gaussian import GaussianHead, GaussianHeadConfig, gaussian_log_prob
from robopolicy.policy import Policy, PolicyConfig
from robopolicy.types import OBS_STATE


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu"])
@pytest.mark.parametrize("out_dim", [None, 1])
@pytest.mark.parametrize("x_grad", [False, True])
def test_mlp_matches_sequential_outputs_and_every_gradient(activation, out_dim, x_grad):
    torch.manual_seed(0)
    net = mlp(7, [32, 16], activation, out_dim).double()
    assert isinstance(net, MLP) and isinstance(net, nn.Sequential)
    x = torch.randn(5, 7, dtype=torch.float64, requires_grad=x_grad)
    y, y_ref = net(x), nn.Sequential.forward(net, x)
    assert torch.equal(y, y_ref)
    g = torch.randn_like(y)
    wrt = [*net.parameters()] + ([x] if x_grad else [])
    for a, b in zip(torch.autograd.grad(y, wrt, g), torch.autograd.grad(y_ref, wrt, g), strict=True):
        assert torch.equal(a, b)


def test_mlp_runs_layer_hooks_and_keeps_sequential_names():
    net = mlp(3, [4], "relu", out_dim=2)
    assert [k for k, _ in net.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    seen = []
    net[0].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    net(torch.randn(6, 3))
    assert seen == [torch.Size([6, 4])]


def test_checkpoint_of_a_plain_sequential_policy_loads_to_identical_actions(tmp_path):
    torch.manual_seed(0)
    cfg = PolicyConfig(state_dim=5, action_dim=2, encoder=EncoderConfig([16, 16], "relu"))
    old = Policy(cfg)
    old.encoder.net = nn.Sequential(*old.encoder.net)  # the layout checkpoints were written with
    path = old.save_pretrained(tmp_path / "p")
    save_file({k: v.contiguous() for k, v in old.state_dict().items()}, str(path / "model.safetensors"))
    new = Policy.from_pretrained(path)
    assert isinstance(new.encoder.net, MLP) and "encoder.net.0.weight" in new.state_dict()
    obs = {OBS_STATE: torch.randn(9, 5)}
    with torch.no_grad():
        assert torch.equal(new.act(obs, deterministic=True).actions, old.act(obs, deterministic=True).actions)


def _two_group_adam(lrs):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    groups = [{"params": list(model[0].parameters()), "lr": lrs[0]}, {"params": list(model[1].parameters()), "lr": lrs[1]}]
    return model, torch.optim.Adam(groups, eps=1e-5, fused=True)


@pytest.mark.parametrize("lrs", [(1e-2, 1e-2), (1e-2, 3e-3)])
def test_adam_step_fn_equals_optimizer_step(lrs):
    ref_model, ref_opt = _two_group_adam(lrs)
    model, opt = _two_group_adam(lrs)
    step = adam_step_fn(opt)
    assert step != opt.step  # the fast path is taken for a plain fused Adam
    for i in range(6):
        x = torch.randn(16, 4)
        for m, o, s in ((ref_model, ref_opt, ref_opt.step), (model, opt, step)):
            o.zero_grad(set_to_none=True)
            loss = m(x).square().mean() if i != 3 else m[1](x @ torch.ones(4, 8)).square().mean()  # 3: group 0 has no grads
            loss.backward()
            if i == 4:
                o.param_groups[0]["lr"] = 5e-4  # lr changes between steps are read
            s()
        for a, b in zip(ref_model.parameters(), model.parameters(), strict=True):
            assert torch.equal(a, b)
    for a, b in zip(ref_model.parameters(), model.parameters(), strict=True):
        sa, sb = ref_opt.state[a], opt.state[b]
        assert all(torch.equal(sa[k], sb[k]) for k in ("exp_avg", "exp_avg_sq", "step"))


def test_adam_step_fn_falls_back_for_other_settings():
    model = nn.Linear(2, 2)
    for opt in (torch.optim.Adam(model.parameters(), amsgrad=True, fused=True), torch.optim.Adam(model.parameters()),
                torch.optim.SGD(model.parameters(), lr=0.1)):
        assert adam_step_fn(opt) == opt.step
    opt = torch.optim.Adam(model.parameters(), fused=True)
    opt.register_step_post_hook(lambda *a: None)
    assert adam_step_fn(opt) == opt.step


def test_clip_grad_norm_equals_torch_and_zero_grad_sets_none():
    torch.manual_seed(0)
    a = [nn.Parameter(torch.randn(5, 3)), nn.Parameter(torch.randn(3)), nn.Parameter(torch.randn(2))]
    b = copy.deepcopy(a)
    for p, q in zip(a, b, strict=True):
        p.grad = torch.randn_like(p) * 3
        q.grad = p.grad.clone()
    b[2].grad = a[2].grad = None  # a parameter without a gradient is skipped
    ref = torch.nn.utils.clip_grad_norm_(a, 0.7)
    got = clip_grad_norm_fn(b, 0.7)()
    assert torch.equal(ref, got) and got > 0.7
    for p, q in zip(a[:2], b[:2], strict=True):
        assert torch.equal(p.grad, q.grad)
    before = [q.grad.clone() for q in b[:2]]
    assert torch.equal(torch.nn.utils.clip_grad_norm_(a, 1e3), clip_grad_norm_fn(b, 1e3)())  # below the bound: no scaling
    for p, q, g in zip(a[:2], b[:2], before, strict=True):
        assert torch.equal(p.grad, q.grad) and torch.equal(q.grad, g)
    opt = torch.optim.Adam(b, fused=True)
    zero_grad_fn(opt)()
    assert all(p.grad is None for p in b)


def test_epoch_gather_trains_exactly_like_per_minibatch_gathers(monkeypatch):
    finals = []
    for limit in (ppo_mod.EPOCH_GATHER_MAX_BYTES, 0):  # 0: every minibatch gathers its rows
        monkeypatch.setattr(ppo_mod, "EPOCH_GATHER_MAX_BYTES", limit)
        policy, critic, ppo = build()
        batch = ppo.prepare(synthetic_rollout(policy))
        hist, _ = minibatch_epochs(ppo.objective, policy, critic, batch, ppo.optimizer, ppo.params, ppo.config, 2,
                                   generator=torch.Generator().manual_seed(3))
        finals.append(([p.detach().clone() for p in ppo.params], [h["loss/pg"] for h in hist]))
    (p0, l0), (p1, l1) = finals
    assert len(l0) == len(l1) == 8
    assert all(torch.equal(a, b) for a, b in zip(p0, p1, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(l0, l1, strict=True))


def test_gaussian_clamped_log_std_values_and_gradients():
    torch.manual_seed(0)
    head = GaussianHead(6, 3, 2, GaussianHeadConfig(min_log_std=-1.0, max_log_std=0.5)).double()
    with torch.no_grad():
        head.log_std.copy_(torch.tensor([-2.0, -1.0, 0.0, 0.5, 1.0, 0.2]))  # below, at, inside, at, above bounds
    feat, trace = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 2, 3, dtype=torch.float64)
    logp, ent = head.log_prob_and_entropy(feat, trace)
    # Reference: clamp the (B, H, A) expansion, as before the clamp moved ahead of the broadcast.
    ls = head.log_std.view(1, 2, 3).expand(4, -1, -1).clamp(-1.0, 0.5)
    mean = head.mean(feat).view(4, 2, 3)
    ref_logp = gaussian_log_prob(trace, mean, ls).flatten(1).sum(-1, keepdim=True)
    ref_ent = (ls + 0.5 + 0.5 * torch.log(torch.tensor(2 * torch.pi, dtype=torch.float64))).flatten(1).sum(-1, keepdim=True)
    assert torch.allclose(logp, ref_logp, rtol=0, atol=1e-12) and torch.allclose(ent, ref_ent, rtol=0, atol=1e-12)
    g, g_ref = (torch.autograd.grad((lp.sum() + e.sum()), head.log_std)[0] for lp, e in ((logp, ent), (ref_logp, ref_ent)))
    assert torch.allclose(g, g_ref, rtol=0, atol=1e-12)
    assert g[0] == 0 and g[4] == 0 and g[2] != 0  # clamped entries get no gradient


def _reference_pg(logp, old_logp, adv, clip):
    """The textbook form: -mean(min(r A, clamp(r, 1 - eps, 1 + eps) A)), advantages normalized."""
    adv = ((adv - adv.mean()) / (adv.std() + 1e-8)).unsqueeze(-1)
    ratio = (logp - old_logp).exp()
    return -torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv).mean()


def test_ppo_clip_term_values_and_gradients_equal_the_min_clamp_form():
    from robopolicy.objective import MiniBatch, PPOClipTerm

    torch.manual_seed(0)
    n = 64
    old = torch.randn(n, 1, dtype=torch.float64)
    # Ratios inside, outside and exactly at the bounds (ties between the two branches), both advantage signs.
    r = torch.cat([torch.full((8,), 1.0), torch.full((8,), 1.2), torch.full((8,), 0.8), torch.empty(40).uniform_(0.5, 1.6)])
    r = r.to(torch.float64).unsqueeze(-1)
    adv = torch.randn(n, dtype=torch.float64)
    for logp0 in (old + r.log(), old.clone()):  # second: every ratio is exactly 1 (the first minibatch)
        logp = logp0.clone().requires_grad_(True)

        class Cache:
            mb = MiniBatch(obs={}, trace=torch.zeros(n), logp=old, advantages=adv, returns=torch.zeros(n),
                           value=torch.zeros(n))

        Cache.logp = logp
        loss, _ = PPOClipTerm(0.2)(Cache())
        ref = _reference_pg(logp, old, adv, 0.2)
        assert torch.allclose(loss, ref, rtol=0, atol=1e-15)
        (g,), (g_ref,) = torch.autograd.grad(loss, logp), torch.autograd.grad(ref, logp)
        assert torch.allclose(g, g_ref, rtol=0, atol=1e-15)
        assert (g != 0).any()


def test_objective_weights_sum_like_a_weighted_sum():
    from robopolicy.objective import Objective, ObjectiveTerm

    class Const(ObjectiveTerm):
        def __init__(self, x):
            super().__init__()
            self.x = x

        def forward(self, cache):
            return self.x * 1.0, {}

    xs = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (0.3, -1.7, 2.5, 4.0)]
    ws = [1.0, 0.25, 0.0, -0.84]
    total, metrics = Objective({f"t{i}": (Const(x), w) for i, (x, w) in enumerate(zip(xs, ws))})(None)
    assert torch.allclose(total, sum(w * x for w, x in zip(ws, xs)), rtol=0, atol=1e-12)
    assert [float(g) for g in torch.autograd.grad(total, xs, allow_unused=True, materialize_grads=True)] == ws
    assert "loss/t2" not in metrics
