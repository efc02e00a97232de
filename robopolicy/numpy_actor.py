"""Acting for the plain Gaussian MLP policy in NumPy: the rollout loop's hot path.

A single-env PPO rollout (Hopper, zoo's schedule) calls ``policy.act`` on one observation per env step.
In torch that is ~20 ops at a few microseconds of dispatch each, and, interleaved with MuJoCo, it measured
~2x slower again than in a tight loop (the two code bases evict each other's caches). The same batch-1
math in NumPy is a handful of ufunc calls on views of the very same parameter storage:

    x    = clip((s - mu_s) * inv_std_s, -c, c)            normalizer (exactly as ``RunningMeanStd``)
    feat = act(W_k ... act(W_1 x + b_1) ... + b_k)         state MLP, relu or tanh
    mean = W_m feat + b_m,  log_std = clamp(log_std, lo, hi)
    pre  = mean + exp(log_std) * eps,  eps ~ N(0, I) drawn by torch (the same stream as ``GaussianHead``)
    a    = tanh(pre) or clip(pre, -1, 1), then the policy's ActionScaler

It samples the distribution ``Policy.act`` samples, from the same torch random stream; the matrix products
run in NumPy's BLAS instead of torch's, so values agree to float32 rounding, not bit for bit
(tests/test_numpy_actor.py). ``NumpyGaussianActor.for_policy`` returns None for any other policy
(cameras, other heads, a head scoring only executed actions, hooks, non-CPU or non-float32 weights), and callers then use ``policy.act``.
The views are re-taken on every ``for_policy`` call, so in-place optimizer steps and ``load_state_dict``
are always seen and a replaced parameter cannot leave a stale copy behind.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from robopolicy.fastcall import global_hooks, has_hooks
from robopolicy.heads.gaussian import LOG_SQRT_2PI, GaussianHead
from robopolicy.policy import Policy
from robopolicy.types import OBS_STATE, ActionSample, Obs

_ACTIVATIONS = {nn.ReLU: "relu", nn.Tanh: "tanh"}
_LOG_2 = math.log(2.0)


class NumpyGaussianActor:
    """``Policy.act`` for a state-only MLP encoder + state-independent Gaussian head, in NumPy. Build one per
    rollout (``for_policy``): the weights are live views, but the clamped log-std is copied at construction."""

    def __init__(self, policy: Policy):
        head: GaussianHead = policy.head  # type: ignore[assignment]
        cfg = head.config
        self.squash, self.chunk, self.action_dim = cfg.squash, head.chunk, head.action_dim
        self.norm = None
        if policy.normalizer.enabled:
            stats = policy.normalizer.stats_for(OBS_STATE)
            assert stats is not None  # every Policy normalizes its state (Policy.__init__ requires state_dim > 0)
            b = stats._buffers
            self.norm = (_view(b["mean"]), _view(b["inv_std"]), float(stats.clip))
        # (W^T, b, activation) per layer: x @ W^T is F.linear's product.
        self.layers: list[tuple[np.ndarray, np.ndarray, str | None]] = []
        modules = list(policy.encoder.net)
        for i, m in enumerate(modules):
            if isinstance(m, nn.Linear):
                nxt = modules[i + 1] if i + 1 < len(modules) else None
                self.layers.append((_view(m.weight).T, _view(m.bias), _ACTIVATIONS.get(type(nxt))))
        self.mean_w, self.mean_b = _view(head.mean.weight).T, _view(head.mean.bias)
        log_std = head.log_std.detach().clamp(cfg.min_log_std, cfg.max_log_std)  # fixed for a whole rollout
        self.log_std = log_std.numpy()
        self.std = log_std.exp().numpy()
        self.log_std_sum = float(log_std.sum())  # the same reduction torch's sample does, once per rollout
        scaler = policy.scaler
        self.to_env = None if scaler.identity else (_view(scaler.center), _view(scaler.half_range))

    @classmethod
    def for_policy(cls, policy: nn.Module) -> NumpyGaussianActor | None:
        """The NumPy actor for ``policy`` when its acting path is the plain one this class reproduces, else None."""
        return cls(policy) if _supported(policy) else None  # type: ignore[arg-type]

    def act(self, obs: Obs, deterministic: bool = False) -> ActionSample:
        """``Policy.act(obs)``: actions and trace (B, H, A), logp (B, 1), as torch tensors."""
        x = obs[OBS_STATE].numpy()
        if self.norm is not None:
            mean, inv_std, clip = self.norm
            x = (x - mean) * inv_std
            np.minimum(x, clip, out=x)  # np.clip's Python wrapper costs more than the two ufuncs
            np.maximum(x, -clip, out=x)
        for w_t, b, activation in self.layers:
            x = x @ w_t
            x += b
            if activation == "relu":
                np.maximum(x, 0.0, out=x)
            elif activation == "tanh":
                np.tanh(x, out=x)
        pre = x @ self.mean_w
        pre += self.mean_b
        batch, per_row = pre.shape
        if deterministic:
            logp = np.full((batch, 1), -self.log_std_sum - LOG_SQRT_2PI * per_row, np.float32)
        else:
            noise = torch.randn(batch, per_row).numpy()  # the draws GaussianHead.sample's randn_like makes
            pre += self.std * noise
            logp = np.square(noise)
            logp *= -0.5
            logp -= self.log_std
            logp = logp.sum(-1, keepdims=True) - np.float32(LOG_SQRT_2PI * per_row)
        if self.squash == "tanh":
            # log|d tanh(x)/dx| = 2 (log 2 - x - softplus(-2x)), softplus(y) = log(1 + e^y)
            logp -= (2.0 * (_LOG_2 - pre - np.logaddexp(0.0, -2.0 * pre))).sum(-1, keepdims=True)
            actions = np.tanh(pre)
        else:
            actions = np.minimum(pre, 1.0)
            np.maximum(actions, -1.0, out=actions)
        shape = (batch, self.chunk, self.action_dim)
        actions = actions.reshape(shape)
        if self.to_env is not None:
            center, half_range = self.to_env
            actions = center + half_range * actions
        return ActionSample(actions=torch.from_numpy(actions), trace=torch.from_numpy(pre.reshape(shape)),
                            logp=torch.from_numpy(logp))


def _view(t: torch.Tensor) -> np.ndarray:
    """A NumPy view (no copy) of a CPU float32 tensor's storage."""
    return t.detach().numpy()


def _supported(policy: nn.Module) -> bool:
    if type(policy) is not Policy or global_hooks():
        return False
    head, encoder = policy.head, policy.encoder
    if type(head) is not GaussianHead or head.config.state_dependent_std or head.config.squash not in ("tanh", "clip"):
        return False
    if head.executed is not None:  # log-probs over the executed actions' dimensions: GaussianHead.sample's path
        return False
    if not getattr(encoder, "_state_only", False) or set(policy.normalizer._names) - {OBS_STATE}:
        return False
    if any(type(m) not in (nn.Linear, *_ACTIVATIONS) for m in encoder.net):
        return False
    if any(has_hooks(m) for m in policy.modules()):
        return False
    tensors = [*policy.parameters(), *policy.buffers()]
    return all(t.device.type == "cpu" and (t.dtype == torch.float32 or not t.is_floating_point()) for t in tensors)
