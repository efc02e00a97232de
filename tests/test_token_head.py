"""Token head: shapes, exact log-probs vs torch.distributions, normalization, KL, bimodal BC, binning."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.distributions import Categorical, kl_divergence

from robopolicy.heads.tokens import TokenHead, TokenHeadConfig

B, F_DIM, H, A, NB = 5, 6, 2, 3, 8
S = H * A


def make_head(**kw) -> TokenHead:
    opts = {"num_bins": NB, "d_model": 32, "num_layers": 2, "num_heads": 4} | kw
    return TokenHead(F_DIM, action_dim=A, chunk=H, config=TokenHeadConfig(**opts))


@pytest.mark.parametrize("deterministic", [False, True])
def test_sample_shapes_dtypes_and_bin_centers(deterministic):
    torch.manual_seed(0)
    head = make_head()
    with torch.no_grad():
        s = head.sample(torch.randn(B, F_DIM), deterministic=deterministic)
    assert head.num_decisions == S
    assert s.actions.shape == (B, H, A) and s.trace.shape == (B, S) and s.logp.shape == (B, S)
    assert s.trace.dtype == torch.int64 and s.trace.min() >= 0 and s.trace.max() < NB
    assert torch.isfinite(s.logp).all() and (s.logp <= 0).all() and s.actions.abs().max() <= 1.0
    # Uniform bins over [-1, 1]: token k of any dimension decodes to -1 + (k + 1/2) * 2 / NB, order (h, a).
    centers = -1.0 + (s.trace.float() + 0.5) * 2.0 / NB
    assert torch.allclose(s.actions, centers.view(B, H, A), atol=1e-6)
    assert torch.equal(head.tokenize(s.actions), s.trace)


def test_deterministic_sample_is_argmax_of_exposed_logits():
    torch.manual_seed(1)
    head = make_head()
    feat = torch.randn(B, F_DIM)
    with torch.no_grad():
        s = head.sample(feat, deterministic=True)
        assert torch.equal(head.logits(feat, s.trace).argmax(-1), s.trace)


def test_log_prob_matches_sample_and_categorical():
    torch.manual_seed(2)
    head = make_head(temperature=1.7)  # the acting policy is softmax(logits / 1.7): sampled, scored and entropy
    feat = torch.randn(B, F_DIM)
    with torch.no_grad():
        s = head.sample(feat)
        logp = head.log_prob(feat, s.trace)
        ref = Categorical(logits=head.logits(feat, s.trace) / 1.7).log_prob(s.trace)
        ent_ref = Categorical(logits=head.logits(feat, s.trace) / 1.7).entropy()
        lp2, ent = head.log_prob_and_entropy(feat, s.trace)
    assert torch.allclose(logp, s.logp, atol=1e-5)
    assert torch.allclose(logp, ref, atol=1e-5)
    assert torch.allclose(lp2, logp, atol=1e-6) and torch.allclose(ent, ent_ref, atol=1e-5)
    assert torch.allclose(head.entropy(feat, s.trace), ent_ref, atol=1e-5)


def test_temperature_sharpens_the_acting_policy_but_not_the_bc_fit():
    torch.manual_seed(21)
    warm = make_head()
    cold = copy.deepcopy(warm)
    cold.config.temperature = 0.01
    feat, actions = torch.randn(B, F_DIM), torch.rand(B, H, A) * 2 - 1
    with torch.no_grad():
        greedy = warm.sample(feat, deterministic=True).trace
        assert torch.equal(cold.sample(feat, deterministic=True).trace, greedy)  # argmax is unchanged
        # At T = 0.01 almost every sampled token is its prefix's argmax; at T = 1 (8 bins, untrained) most are not.
        def argmax_share(head: TokenHead) -> float:
            trace = head.sample(feat.repeat(40, 1)).trace
            return float((trace == head.logits(feat.repeat(40, 1), trace).argmax(-1)).float().mean())

        cold_match, warm_match = argmax_share(cold), argmax_share(warm)
        assert cold_match > 0.9 and warm_match < 0.5
        assert torch.equal(cold.imitation_loss(feat, actions), warm.imitation_loss(feat, actions))


def test_cached_decoding_matches_teacher_forcing_at_every_position():
    """sample() runs one token per step over cached keys and values; its logits at every position must be
    the full causal pass's, or the logp stored at rollout would not be the one PPO recomputes."""
    torch.manual_seed(3)
    head = make_head(num_layers=3, d_model=48, num_heads=6)
    with torch.no_grad():
        for p in head.parameters():  # larger weights than at init: sharp, position-dependent logits
            p.mul_(3.0)
        feat = torch.randn(64, F_DIM)
        s = head.sample(feat)
        full = torch.log_softmax(head.logits(feat, s.trace), -1).gather(-1, s.trace.unsqueeze(-1)).squeeze(-1)
    assert s.logp.std() > 0.1  # not a flat distribution that any decoder would match
    assert torch.allclose(s.logp, full, atol=1e-4)


def test_log_prob_is_differentiable():
    torch.manual_seed(3)
    head = make_head()
    feat = torch.randn(B, F_DIM, requires_grad=True)
    with torch.no_grad():
        trace = head.sample(feat).trace
    head.log_prob(feat, trace).sum().backward()
    assert feat.grad is not None and feat.grad.abs().sum() > 0
    assert all(p.grad is not None for p in head.parameters())


def test_probabilities_normalize_and_decoding_is_causal():
    torch.manual_seed(4)
    head = make_head()
    feat = torch.randn(1, F_DIM)
    with torch.no_grad():
        trace = head.sample(feat).trace
        for pos in (0, S // 2, S - 1):
            # Every vocabulary entry at `pos`, same prefix: the log-probs at `pos` must logsumexp to 0.
            variants = trace.repeat(NB, 1)
            variants[:, pos] = torch.arange(NB)
            logp = head.log_prob(feat.expand(NB, -1), variants)
            assert torch.logsumexp(logp[:, pos], dim=0).abs() < 1e-5
            # Changing token `pos` must not change the log-probs of earlier tokens (causal mask).
            assert torch.allclose(logp[:, :pos], logp[:1, :pos].expand(NB, -1), atol=1e-5)


def test_divergence_self_is_zero_and_matches_explicit_sums():
    torch.manual_seed(5)
    student = make_head()
    teacher = copy.deepcopy(student)
    feat, t_feat = torch.randn(B, F_DIM), torch.randn(B, F_DIM)
    with torch.no_grad():
        trace = student.sample(feat).trace
        for kind in ("reverse_kl", "forward_kl", "js"):
            assert student.divergence(feat, trace, teacher, feat, kind).abs().max() < 1e-5
        for p in teacher.parameters():
            p.add_(0.3 * torch.randn_like(p))
        p_dist = Categorical(logits=student.logits(feat, trace))
        q_dist = Categorical(logits=teacher.logits(t_feat, trace))
        rkl = student.divergence(feat, trace, teacher, t_feat, "reverse_kl")
        fkl = student.divergence(feat, trace, teacher, t_feat, "forward_kl")
        js = student.divergence(feat, trace, teacher, t_feat, "js")
        assert rkl.shape == fkl.shape == js.shape == (B, S)
        assert torch.allclose(rkl, kl_divergence(p_dist, q_dist), atol=1e-5)
        assert torch.allclose(fkl, kl_divergence(q_dist, p_dist), atol=1e-5)
        p, q = p_dist.probs, q_dist.probs
        m = (p + q) / 2
        js_ref = 0.5 * (p * (p / m).log()).sum(-1) + 0.5 * (q * (q / m).log()).sum(-1)
        assert torch.allclose(js, js_ref, atol=1e-5)
        assert rkl.min() > 1e-4 and (js <= torch.log(torch.tensor(2.0)) + 1e-6).all()
        # Monte-Carlo check of one position: E_{k~p}[log p_k - log q_k] over 20k draws.
        draws = p_dist.sample((20000,))[:, 0, 0]
        mc = (p_dist.logits[0, 0, draws] - q_dist.logits[0, 0, draws]).mean()
        assert abs(float(mc) - float(rkl[0, 0])) < 0.05 + 0.1 * float(rkl[0, 0])


def test_divergence_rejects_mismatched_teacher():
    head = make_head()
    trace = torch.zeros(B, S, dtype=torch.int64)
    feat = torch.randn(B, F_DIM)
    with pytest.raises(ValueError, match="num_bins"):
        head.divergence(feat, trace, make_head(num_bins=NB * 2), feat, "reverse_kl")
    with pytest.raises(ValueError, match="divergence kind"):
        head.divergence(feat, trace, head, feat, "tv")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matmuls on a shared 2-core box: intra-op threads cost far more than they save (60x here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fit_imitation(head: TokenHead, feat: torch.Tensor, actions: torch.Tensor, steps: int) -> torch.Tensor:
    """Adam (lr 3e-3) on the BC loss for ``steps`` full-batch steps; the last loss."""
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = head.imitation_loss(feat, actions)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss


def test_bimodal_imitation_reproduces_both_modes_and_roundtrip():
    torch.manual_seed(6)
    head = TokenHead(4, action_dim=1, chunk=2, config=TokenHeadConfig(num_bins=16, d_model=32, num_heads=2))
    # Half the chunks are (+0.7, +0.7), half (-0.7, -0.7); feat carries no information about the mode.
    n = 128
    modes = torch.where(torch.rand(n) < 0.5, 0.7, -0.7)
    actions = modes.view(n, 1, 1).expand(n, 2, 1).contiguous()
    width = 2.0 / 16
    assert (head.detokenize(head.tokenize(actions)) - actions).abs().max() <= width / 2 + 1e-6
    feat = torch.ones(n, 4)
    loss = fit_imitation(head, feat, actions, steps=100)
    # Entropy of a fair coin spread over S = 2 tokens: ln 2 / 2 per token is the minimum of the mean CE.
    assert loss.item() < 0.5
    with torch.no_grad():
        s = head.sample(torch.ones(400, 4))
    first, second = s.actions[:, 0, 0], s.actions[:, 1, 0]
    near_pos, near_neg = (first - 0.7).abs() <= width, (first + 0.7).abs() <= width
    assert (near_pos | near_neg).float().mean() > 0.95
    assert 0.3 < near_pos.float().mean() < 0.7  # both modes, neither collapsed
    assert ((second - first).abs() <= width).float().mean() > 0.95  # second token follows the first's mode


def _prefix_sensitivity(input_dropout: float) -> float:
    """Fit 64 samples whose 2 action dimensions are independent noise around a per-sample mean; return the mean
    total variation between p(tok_1 | feat, tok_0) and p(tok_1 | feat, tok_0 + 1) on those samples."""
    torch.manual_seed(0)
    n, nb = 64, 32
    head = TokenHead(8, action_dim=2, chunk=1, config=TokenHeadConfig(num_bins=nb, d_model=32, num_heads=2,
                                                                      input_dropout=input_dropout))
    feat = torch.randn(n, 8)
    actions = (0.3 * torch.tanh(feat[:, :2]) + 0.3 * torch.randn(n, 2)).clamp(-0.95, 0.95).unsqueeze(1)
    fit_imitation(head, feat, actions, steps=400)
    head.eval()
    tok = head.tokenize(actions)
    moved = tok.clone()
    moved[:, 0] = torch.where(tok[:, 0] < nb - 1, tok[:, 0] + 1, tok[:, 0] - 1)
    with torch.no_grad():
        p, q = (head.logits(feat, t)[:, 1].softmax(-1) for t in (tok, moved))
    return 0.5 * (p - q).abs().sum(-1).mean().item()


def test_input_dropout_stops_the_prefix_from_keying_the_next_tokens_noise():
    # Without it the fit memorizes token 1's noise keyed on token 0 (one bin away it predicts another sample's
    # noise); with every input token random the next-token distribution cannot depend on the prefix.
    keyed, free = _prefix_sensitivity(0.0), _prefix_sensitivity(1.0)
    assert keyed > 0.3, keyed
    assert free < 0.1, free


def test_quantile_bins_equalize_mass():
    torch.manual_seed(7)
    head = make_head(binning="quantile")
    data = torch.stack([torch.randn(4000, H) * 0.2, torch.rand(4000, H) ** 3, torch.tanh(torch.randn(4000, H))], -1)
    head.fit_bins(data)
    assert head.bin_edges.shape == (A, NB + 1)
    assert (head.bin_edges[:, 1:] > head.bin_edges[:, :-1]).all()
    tokens = head.tokenize(data).view(-1, H, A)
    for a in range(A):
        counts = torch.bincount(tokens[..., a].flatten(), minlength=NB).float()
        expected = data[..., a].numel() / NB
        assert ((counts - expected).abs() <= 0.1 * expected).all(), counts
    # Round trip: every action lands in its bin, so the error is at most half that bin's width.
    ids = head.tokenize(data).view(-1, H, A)
    err = (head.detokenize(ids.view(-1, S)) - data).abs()
    widths = (head.bin_edges[:, 1:] - head.bin_edges[:, :-1])[torch.arange(A), ids]
    assert (err <= widths / 2 + 1e-6).all()
    with pytest.raises(ValueError, match="binning"):
        make_head().fit_bins(data)


def _quantized_expert_push_successes(head: TokenHead | None, seeds: range, record: list | None = None) -> int:
    """Episodes of push-v3 the scripted expert wins when each action goes through ``head``'s bins (token -> center)."""
    import gymnasium as gym
    import numpy as np

    import envs.metaworld as mw

    expert, env, wins = mw.scripted_expert("push-v3"), gym.make(mw.task_env_id("push-v3")), 0
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        for _ in range(200):
            action = torch.from_numpy(np.clip(expert.get_action(obs), -1, 1).astype(np.float32)).view(1, 1, -1)
            if record is not None:
                record.append(action)
            if head is not None:
                action = head.detokenize(head.tokenize(action))
            obs, _, _, _, info = env.step(action.view(-1).numpy())
            if info["success"]:
                wins += 1
                break
    env.close()
    return wins


def test_quantile_bins_keep_the_scripted_experts_push_success():
    """The token vocabulary is not what holds push back (session 26): 64 quantile bins fitted to the expert's own
    actions keep its success, where 4 uniform bins (centers +-0.25, +-0.75) lose it."""
    actions: list[torch.Tensor] = []
    assert _quantized_expert_push_successes(None, range(3), actions) == 3
    fitted = TokenHead(8, 4, 1, TokenHeadConfig(num_bins=64, binning="quantile"))
    fitted.fit_bins(torch.cat(actions))
    assert _quantized_expert_push_successes(fitted, range(100, 110)) == 10
    coarse = TokenHead(8, 4, 1, TokenHeadConfig(num_bins=4))
    assert _quantized_expert_push_successes(coarse, range(100, 110)) <= 2


def test_state_dict_roundtrip_reproduces_log_prob(tmp_path):
    torch.manual_seed(8)
    head = make_head(binning="quantile")
    head.fit_bins(torch.rand(500, H, A) * 2 - 1)
    feat = torch.randn(B, F_DIM)
    with torch.no_grad():
        s = head.sample(feat)
    torch.save(head.state_dict(), tmp_path / "head.pt")
    loaded = make_head(binning="quantile")
    loaded.load_state_dict(torch.load(tmp_path / "head.pt"))
    with torch.no_grad():
        assert torch.allclose(loaded.log_prob(feat, s.trace), s.logp, atol=1e-5)
        assert torch.equal(loaded.detokenize(s.trace), s.actions)


@pytest.mark.parametrize(("field", "value"), [
    ("num_bins", 1), ("binning", "log"), ("d_model", 0), ("num_layers", 0), ("num_heads", 3),
    ("dropout", 1.0), ("temperature", 0.0), ("label_std", -1.0), ("input_dropout", 1.5),
])
def test_invalid_config_raises_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TokenHeadConfig(**{field: value})


def test_soft_targets_center_on_the_action_and_vanish_into_one_hot():
    torch.manual_seed(0)
    head = make_head(num_bins=32, label_std=1.0)
    actions = torch.rand(B, H, A) * 1.6 - 0.8  # interior, so the Gaussian is not cut by the range
    p = head.soft_targets(actions)
    assert p.shape == (B, S, 32)
    assert torch.allclose(p.sum(-1), torch.ones(B, S))
    centers = head.bin_centers[torch.arange(S) % A]  # (S, nb)
    assert torch.allclose((p * centers).sum(-1), actions.reshape(B, S), atol=0.01)  # bin width 0.0625
    assert torch.equal(p.argmax(-1), head.tokenize(actions))
    feat = torch.randn(B, F_DIM)
    hard = make_head(num_bins=32)
    hard.load_state_dict(head.state_dict())
    head.config.label_std = 1e-3  # far below a bin width: the targets are one-hot
    assert torch.allclose(head.imitation_loss(feat, actions), hard.imitation_loss(feat, actions), atol=1e-5)


def test_bad_trace_raises():
    head = make_head()
    with pytest.raises(ValueError, match="int64"):
        head.log_prob(torch.randn(B, F_DIM), torch.zeros(B, S))
