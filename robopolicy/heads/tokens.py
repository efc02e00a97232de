"""Autoregressive action-token head: discretized actions, causal transformer, exact softmax (S = H*A).

Tokenization (RT-1 / OpenVLA style, one token per action dimension per chunk step):
    edges[a] (num_bins + 1,) per action dimension a, edges[a, 0] = -1, edges[a, -1] = 1
    token(x)  = #{inner edges of dimension a <= x}          in [0, num_bins)
    detoken(k) = (edges[a, k] + edges[a, k + 1]) / 2         (the bin center)
"uniform" edges split [-1, 1] evenly; "quantile" edges come from ``fit_bins`` on a dataset, so
every bin holds about the same mass of that data (finer bins where the actions are dense).

The S = H*A tokens are ordered (h, a) row-major: s = h * A + a. A causal transformer decodes
them with the projected ``feat`` as its first input (prefix conditioning):
    inputs  = [proj(feat), emb(tok_0), ..., emb(tok_{S-2})] + pos[0..S-1]
    logits_s = f_theta(inputs_{<=s})  ->  p(tok_s | tok_{<s}, feat) = softmax(logits_s)
Every token is one inner decision; its log-prob, entropy and KL to a teacher are exact sums
over the num_bins vocabulary, so PPO and on-policy distillation need no Monte-Carlo terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robopolicy.heads.base import ActionHead, DivergenceKind, check_divergence_kind
from robopolicy.types import ActionSample

BINNINGS = ("uniform", "quantile")


@dataclass
class TokenHeadConfig:
    num_bins: int = 64
    """Vocabulary size: bins per action dimension."""
    binning: Literal["uniform", "quantile"] = "uniform"
    """Bin edges: "uniform" over [-1, 1], or "quantile" per dimension, set by ``TokenHead.fit_bins``."""
    d_model: int = 64
    """Width of the transformer decoder."""
    num_layers: int = 2
    """Number of causal self-attention layers."""
    num_heads: int = 4
    """Attention heads per layer; must divide d_model."""
    dropout: float = 0.0
    """Dropout inside the transformer layers (keep 0 for RL: log_prob must match sample's logp)."""
    temperature: float = 1.0
    """The policy's softmax temperature: sampling, log_prob, entropy and divergence all use softmax(logits / T),
    so PPO's ratios are those of the policy that acted. BC's cross-entropy fits the T = 1 logits to the data;
    T < 1 then sharpens that fit for rollouts (fewer off-mode tokens), as a lower exploration std does."""
    label_std: float = 0.0
    """BC targets: 0 = one-hot tokens; > 0 = a Gaussian of this std (in uniform bin widths, 2 / num_bins)
    around the continuous action, integrated over each bin (HL-Gauss), so neighbouring bins share
    credit and the classifier learns that bins are ordered."""
    input_dropout: float = 0.0
    """Imitation only (BC, and fine-tuning's bc term): the probability that each teacher-forced input token of
    ``imitation_loss`` is replaced by a uniformly random one. With noisy demos a one-hot fit can use the earlier
    tokens of a sample as a key to its later (independent) noise, so one bin's change in token 0 moves the rest
    (session 27); random inputs make the prefix an unreliable key. PPO's log-probs always see the true prefix."""

    def __post_init__(self) -> None:
        if self.binning not in BINNINGS:
            raise ValueError(f"TokenHeadConfig.binning: unknown binning {self.binning!r}; expected one of {BINNINGS}")
        if self.num_bins < 2:
            raise ValueError(f"TokenHeadConfig.num_bins must be >= 2, got {self.num_bins}")
        if self.d_model < 1:
            raise ValueError(f"TokenHeadConfig.d_model must be >= 1, got {self.d_model}")
        if self.num_layers < 1:
            raise ValueError(f"TokenHeadConfig.num_layers must be >= 1, got {self.num_layers}")
        if self.num_heads < 1 or self.d_model % self.num_heads:
            raise ValueError(f"TokenHeadConfig.num_heads must be >= 1 and divide d_model={self.d_model}, "
                             f"got {self.num_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TokenHeadConfig.dropout must be in [0, 1), got {self.dropout}")
        if not (self.temperature > 0.0 and math.isfinite(self.temperature)):
            raise ValueError(f"TokenHeadConfig.temperature must be finite and > 0, got {self.temperature}")
        if not (self.label_std >= 0.0 and math.isfinite(self.label_std)):
            raise ValueError(f"TokenHeadConfig.label_std must be finite and >= 0, got {self.label_std}")
        if not 0.0 <= self.input_dropout <= 1.0:
            raise ValueError(f"TokenHeadConfig.input_dropout must be in [0, 1], got {self.input_dropout}")


class TokenHead(ActionHead):
    """Autoregressive token head. Shapes: feat (B, F); actions (B, H, A); trace (B, S) int64; logp (B, S)."""

    def __init__(self, feat_dim: int, action_dim: int, chunk: int, config: TokenHeadConfig | None = None):
        super().__init__()
        self.config = cfg = config or TokenHeadConfig()
        self.action_dim, self.chunk = action_dim, chunk
        self.num_decisions = chunk * action_dim
        # Per-dimension bin edges (A, num_bins + 1); a buffer so fitted quantile edges travel with
        # the state_dict. Starts uniform; fit_bins overwrites it in "quantile" mode.
        edges = torch.linspace(-1.0, 1.0, cfg.num_bins + 1).expand(action_dim, -1).clone()
        self.register_buffer("bin_edges", edges)
        self.feat_proj = nn.Linear(feat_dim, cfg.d_model)
        self.token_embed = nn.Embedding(cfg.num_bins, cfg.d_model)
        self.pos_embed = nn.Parameter(torch.randn(self.num_decisions, cfg.d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.num_heads, dim_feedforward=4 * cfg.d_model,
                                           dropout=cfg.dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.decoder = nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False)
        self.out_norm = nn.LayerNorm(cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.num_bins)

    # ----------------------------------------------------------------- tokenization
    @property
    def bin_centers(self) -> Tensor:
        """Bin centers (A, num_bins): the action each token decodes to."""
        return 0.5 * (self.bin_edges[:, :-1] + self.bin_edges[:, 1:])

    @torch.no_grad()
    def fit_bins(self, actions: Tensor) -> None:
        """Set per-dimension quantile edges from a dataset of chunks (N, H, A) in [-1, 1].

        edges[a] = quantiles of actions[..., a] at levels 0, 1/num_bins, ..., 1, with the outer
        edges pinned to -1 and 1 so every action in range has a bin; ties (discrete data) are
        pushed apart by 1e-6 so the edges stay strictly increasing.
        """
        if self.config.binning != "quantile":
            raise ValueError(f"TokenHeadConfig.binning is {self.config.binning!r}: fit_bins needs binning='quantile'")
        if actions.dim() != 3 or actions.shape[-1] != self.action_dim:
            raise ValueError(f"TokenHead.fit_bins: actions must be (N, H, A={self.action_dim}), "
                             f"got {tuple(actions.shape)}")
        x = actions.detach().reshape(-1, self.action_dim).to(self.bin_edges).clamp(-1.0, 1.0)
        levels = torch.linspace(0.0, 1.0, self.config.num_bins + 1, dtype=x.dtype, device=x.device)
        edges = torch.quantile(x, levels, dim=0).T.contiguous()  # (A, num_bins + 1)
        edges[:, 0], edges[:, -1] = -1.0, 1.0
        ramp = 1e-6 * torch.arange(edges.shape[1], dtype=x.dtype, device=x.device)
        edges = torch.cummax(edges - ramp, dim=1).values + ramp  # strictly increasing
        edges[:, -1] = torch.maximum(edges[:, -1], torch.ones_like(edges[:, -1]))
        self.bin_edges.copy_(edges)

    def tokenize(self, actions: Tensor) -> Tensor:
        """Actions (B, H, A) -> token ids (B, S) int64, ordered (h, a) row-major; values clipped to [-1, 1]."""
        b = actions.shape[0]
        if tuple(actions.shape[1:]) != (self.chunk, self.action_dim):
            raise ValueError(f"TokenHead: actions must be (B, H, A) = (B, {self.chunk}, {self.action_dim}), "
                             f"got {tuple(actions.shape)}")
        x = actions.clamp(-1.0, 1.0).reshape(-1, self.action_dim).T.contiguous()  # (A, B*H)
        inner = self.bin_edges[:, 1:-1].contiguous()  # (A, num_bins - 1)
        tokens = torch.searchsorted(inner.to(x.dtype), x, right=True)  # (A, B*H), in [0, num_bins)
        return tokens.T.reshape(b, self.num_decisions)

    def detokenize(self, tokens: Tensor) -> Tensor:
        """Token ids (B, S) -> bin-center actions (B, H, A)."""
        b = tokens.shape[0]
        ids = tokens.view(b, self.chunk, self.action_dim)
        centers = self.bin_centers  # (A, num_bins)
        dims = torch.arange(self.action_dim, device=tokens.device)
        return centers[dims, ids]  # centers[a, ids[b, h, a]]

    # ----------------------------------------------------------------- network
    def _check_trace(self, feat: Tensor, trace: Tensor) -> None:
        expected = (feat.shape[0], self.num_decisions)
        if tuple(trace.shape) != expected or trace.dtype != torch.int64:
            raise ValueError(f"TokenHead trace must be int64 token ids of shape (B, S) = {expected}, "
                             f"got {trace.dtype} {tuple(trace.shape)}")

    def _decode(self, feat: Tensor, prefix: Tensor) -> Tensor:
        """Causal pass: feat (B, F), prefix tokens (B, L-1) -> logits (B, L, num_bins) for tokens 0..L-1."""
        x = torch.cat([self.feat_proj(feat).unsqueeze(1), self.token_embed(prefix)], dim=1)
        n = x.shape[1]
        x = x + self.pos_embed[:n]
        # Position i attends to positions <= i only (True = masked).
        mask = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)
        h = self.decoder(x, mask=mask)
        return self.out(self.out_norm(h))

    def logits(self, feat: Tensor, trace: Tensor) -> Tensor:
        """Teacher-forced temperature-1 logits (B, S, num_bins) of every token given its prefix in ``trace``."""
        self._check_trace(feat, trace)
        return self._decode(feat, trace[:, :-1])

    # ----------------------------------------------------------------- interface
    def sample(self, feat: Tensor, deterministic: bool = False) -> ActionSample:
        """Decode S tokens one at a time; trace (B, S) int64, logp (B, S), actions = bin centers (B, H, A).

        Stochastic tokens are drawn from softmax(logits / temperature) (argmax when deterministic), and
        logp is the log of that same distribution: the density that ``log_prob`` recomputes.
        Each step feeds only the newest token and attends over cached keys and values, so a chunk costs
        S one-token passes, not S passes over growing prefixes (same logits as ``_decode``).
        """
        cache: list[tuple[Tensor, Tensor] | None] = [None] * len(self.decoder.layers)
        x = self.feat_proj(feat).unsqueeze(1)  # (B, 1, d): position 0 is the prefix
        tokens, logps = [], []
        for s in range(self.num_decisions):
            logits = self._decode_next(x + self.pos_embed[s], cache) / self.config.temperature  # (B, num_bins)
            logp_all = F.log_softmax(logits, dim=-1)
            if deterministic:
                tok = logits.argmax(dim=-1)
            else:
                tok = torch.multinomial(logp_all.exp(), 1).squeeze(-1)
            logps.append(logp_all.gather(-1, tok.unsqueeze(-1)).squeeze(-1))
            tokens.append(tok)
            x = self.token_embed(tok).unsqueeze(1)
        trace = torch.stack(tokens, dim=1)
        logp = self.mask_unexecuted(torch.stack(logps, dim=1))  # set_executed: the unexecuted actions' tokens drop out
        return ActionSample(actions=self.detokenize(trace), trace=trace, logp=logp)

    def _decode_next(self, x: Tensor, cache: list[tuple[Tensor, Tensor] | None]) -> Tensor:
        """One causal step: the newest input (B, 1, d) -> its logits (B, num_bins); appends to ``cache``.

        The same pre-norm layers as ``self.decoder``, run from their own weights: nn.TransformerEncoderLayer
        has no incremental mode. Dropout is skipped, as in eval mode (RL keeps dropout at 0).
        """
        for i, layer in enumerate(self.decoder.layers):
            attn = layer.self_attn
            q, k, v = F.linear(layer.norm1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
            if cache[i] is not None:
                k, v = torch.cat([cache[i][0], k], dim=1), torch.cat([cache[i][1], v], dim=1)
            cache[i] = (k, v)
            b, n, d = k.shape
            heads = attn.num_heads
            # The newest position attends to every cached one (itself included): no mask needed.
            out = F.scaled_dot_product_attention(q.view(b, 1, heads, -1).transpose(1, 2),
                                                 k.view(b, n, heads, -1).transpose(1, 2),
                                                 v.view(b, n, heads, -1).transpose(1, 2))
            x = x + attn.out_proj(out.transpose(1, 2).reshape(b, 1, d))
            x = x + layer.linear2(layer.activation(layer.linear1(layer.norm2(x))))
        return self.out(self.out_norm(x))[:, 0]

    def policy_logits(self, feat: Tensor, trace: Tensor) -> Tensor:
        """The acting policy's logits (B, S, num_bins): the teacher-forced logits over the temperature."""
        return self.logits(feat, trace) / self.config.temperature

    def log_prob(self, feat: Tensor, trace: Tensor) -> Tensor:
        """Exact log p(tok_s | tok_{<s}, feat) for every token, (B, S), from one teacher-forced pass (0 for the
        unexecuted actions' tokens after ``set_executed``)."""
        logp_all = F.log_softmax(self.policy_logits(feat, trace), dim=-1)
        return self.mask_unexecuted(logp_all.gather(-1, trace.unsqueeze(-1)).squeeze(-1))

    def entropy(self, feat: Tensor, trace: Tensor) -> Tensor:
        """Exact entropy of each next-token distribution along ``trace``, (B, S)."""
        return self.log_prob_and_entropy(feat, trace)[1]

    def log_prob_and_entropy(self, feat: Tensor, trace: Tensor) -> tuple[Tensor, Tensor]:
        """Both (B, S) from one pass: H_s = -sum_k p_k log p_k over the vocabulary."""
        logp_all = F.log_softmax(self.policy_logits(feat, trace), dim=-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        return self.mask_unexecuted(logp_all.gather(-1, trace.unsqueeze(-1)).squeeze(-1)), entropy

    def imitation_loss(self, feat: Tensor, actions: Tensor) -> Tensor:
        """Teacher-forced cross-entropy of the tokenized target chunks (B, H, A); scalar (mean over B*S)."""
        tokens = self.tokenize(actions)
        inputs = tokens
        if self.training and self.config.input_dropout > 0:
            swap = torch.rand(tokens.shape, device=tokens.device) < self.config.input_dropout
            inputs = torch.where(swap, torch.randint_like(tokens, self.config.num_bins), tokens)
        logits = self.logits(feat, inputs)
        if self.config.label_std == 0.0:
            return F.cross_entropy(logits.flatten(0, 1), tokens.flatten())
        return -(self.soft_targets(actions) * F.log_softmax(logits, dim=-1)).sum(-1).mean()

    def soft_targets(self, actions: Tensor) -> Tensor:
        """HL-Gauss targets (B, S, num_bins): the mass of N(x_s, sigma^2) in each bin of x_s's dimension,
        sigma = label_std * 2 / num_bins, renormalized to the bins inside [-1, 1]."""
        b = actions.shape[0]
        x = actions.clamp(-1.0, 1.0).reshape(b, self.num_decisions, 1)  # (h, a) row-major, as tokenize
        edges = self.bin_edges[torch.arange(self.num_decisions, device=x.device) % self.action_dim]  # (S, nb + 1)
        sigma = self.config.label_std * 2.0 / self.config.num_bins
        cdf = torch.special.ndtr((edges.to(x.dtype) - x) / sigma)  # (B, S, nb + 1)
        mass = cdf[..., 1:] - cdf[..., :-1]
        return mass / mass.sum(-1, keepdim=True).clamp_min(1e-12)

    def divergence(
        self, feat: Tensor, trace: Tensor, teacher_head: ActionHead, teacher_feat: Tensor, kind: DivergenceKind
    ) -> Tensor:
        """Exact per-token divergence (B, S) between next-token distributions at the student's prefixes.

        p = student, q = teacher, both conditioned on the same prefix tok_{<s} from ``trace``:
            reverse_kl = sum_k p_k (log p_k - log q_k)       KL(p || q)
            forward_kl = sum_k q_k (log q_k - log p_k)       KL(q || p)
            js         = 1/2 KL(p || m) + 1/2 KL(q || m),    m = (p + q) / 2
        Sums run over the whole vocabulary, so every kind is exact and differentiable in both heads.
        """
        check_divergence_kind(kind)
        if not isinstance(teacher_head, TokenHead):
            raise TypeError(f"TokenHead.divergence needs a TokenHead teacher, got {type(teacher_head).__name__}")
        mine = (self.config.num_bins, self.chunk, self.action_dim)
        theirs = (teacher_head.config.num_bins, teacher_head.chunk, teacher_head.action_dim)
        if mine != theirs:
            raise ValueError(f"TokenHead.divergence: teacher (num_bins, chunk, action_dim) = {theirs} must match "
                             f"the student's {mine}: token KL compares the same vocabulary and positions")
        if not torch.allclose(self.bin_edges, teacher_head.bin_edges.to(self.bin_edges)):
            raise ValueError("TokenHead.divergence: teacher bin_edges differ from the student's: the same token id "
                             "would mean different actions")
        lp = F.log_softmax(self.policy_logits(feat, trace), dim=-1)
        lq = F.log_softmax(teacher_head.policy_logits(teacher_feat, trace), dim=-1)
        if kind == "reverse_kl":
            return (lp.exp() * (lp - lq)).sum(-1)
        if kind == "forward_kl":
            return (lq.exp() * (lq - lp)).sum(-1)
        lm = torch.logaddexp(lp, lq) - math.log(2.0)  # log m = log((p + q) / 2)
        return 0.5 * (lp.exp() * (lp - lm)).sum(-1) + 0.5 * (lq.exp() * (lq - lm)).sum(-1)
