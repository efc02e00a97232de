"""Running observation statistics that live inside the policy (saved with its weights).

Batched Welford / Chan update: for a batch with mean m_b, var v_b, count n_b,
    delta = m_b - m,  n' = n + n_b,  m' = m + delta * n_b / n',
    M2' = v n + v_b n_b + delta^2 n n_b / n',  v' = M2' / n'.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from robopolicy.fastcall import call
from robopolicy.types import Obs


class RunningMeanStd(nn.Module):
    """Mean / variance of a (N, D) stream; buffers so they travel in the state dict."""

    def __init__(self, dim: int, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.clip, self.eps = clip, eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.tensor(1e-4))
        # 1 / sqrt(var + eps), refreshed on update: saves two ops on every forward.
        self.register_buffer("inv_std", torch.ones(dim), persistent=False)

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        x = x.reshape(-1, self.mean.shape[0]).to(self.mean)
        n_b = x.shape[0]
        if n_b == 0:
            return
        m_b, v_b = x.mean(0), x.var(0, unbiased=False)
        delta, n = m_b - self.mean, self.count
        total = n + n_b
        self.mean += delta * n_b / total
        self.var.copy_((self.var * n + v_b * n_b + delta.square() * n * n_b / total) / total)
        self.count.fill_(total)
        self.refresh()

    def refresh(self) -> None:
        self.inv_std.copy_(torch.rsqrt(self.var + self.eps))

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self.refresh()

    def forward(self, x: Tensor) -> Tensor:
        b = self._buffers  # not self.mean: nn.Module.__getattr__ is a slow path, and this runs every step
        return ((x - b["mean"]) * b["inv_std"]).clamp_(-self.clip, self.clip)


class ObsNormalizer(nn.Module):
    """Normalizes the float vector keys of an observation dict; other keys pass through.

    Camera images (observation.images.<cam>) are deliberately not among them: the image encoder
    scales them to [0, 1] (uint8 / 255), since running pixel statistics would drift with the scene."""

    def __init__(self, dims: dict[str, int], enabled: bool = True, clip: float = 10.0):
        super().__init__()
        self.enabled = enabled
        # nn.ModuleDict keys cannot hold dots; keep a mapping to LeRobot key names.
        self._names = {key: key.replace(".", "__") for key in dims}
        self.stats = nn.ModuleDict({self._names[k]: RunningMeanStd(d, clip) for k, d in dims.items()})

    def update(self, obs: Obs) -> None:
        if not self.enabled:
            return
        for key, name in self._names.items():
            if key in obs:
                self.stats[name].update(obs[key])

    def stats_for(self, key: str) -> RunningMeanStd | None:
        """The running statistics of observation key ``key`` (its LeRobot name), or None if it is not normalized."""
        name = self._names.get(key)  # every name in _names has its statistics in self.stats
        return None if name is None else self.stats[name]  # type: ignore[return-value]

    def forward(self, obs: Obs) -> Obs:
        if not self.enabled:
            return obs
        out = dict(obs)
        stats = self.stats._modules
        for key, name in self._names.items():
            if key in obs:
                out[key] = call(stats[name], obs[key])
        return out


class ReturnNormalizer(nn.Module):
    """Scales rewards by the running std of the discounted return (as SB3's VecNormalize):
        G_t = gamma * G_{t-1} * (1 - done_{t-1}) + r_t,   r'_t = clip(r_t / std(G), -c, c).
    Lives in the algorithm, not the env, so the env always reports true rewards."""

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.gamma, self.clip, self.eps = gamma, clip, eps
        self.rms = RunningMeanStd(1)
        self.register_buffer("running_return", torch.zeros(num_envs))

    @torch.no_grad()
    def forward(self, reward: Tensor, done: Tensor) -> Tensor:
        """reward, done (T, B) -> scaled reward (T, B); updates the statistics."""
        r, not_done = reward.cpu().numpy(), (~done).cpu().numpy()
        returns = np.empty_like(r)
        g = self.running_return.cpu().numpy()
        for t in range(r.shape[0]):  # NumPy: cheap per-step ops on (B,) slices
            g = self.gamma * g + r[t]
            returns[t] = g
            g = g * not_done[t]
        self.running_return.copy_(torch.from_numpy(g))
        self.rms.update(torch.from_numpy(returns).reshape(-1, 1))
        return (reward / torch.sqrt(self.rms.var + self.eps)).clamp(-self.clip, self.clip)
