"""Advantage estimators over time-major tensors (T, B).

GAE with explicit bootstrap values, so truncation and termination differ:
    delta_t = r_t + gamma_t * (1 - term_t) * V'_t - V(s_t)
    A_t     = delta_t + gamma_t * lambda * (1 - done_t) * A_{t+1}
where V'_t is the value of the state reached by step t: V(s_{t+1}) inside an episode,
V(final_obs_t) at a time-limit truncation, and ignored at a termination.
gamma_t = gamma ** chunk_steps_t discounts a chunk-level step that ran several env steps.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def gae(
    reward: Tensor,
    value: Tensor,
    next_value: Tensor,
    terminated: Tensor,
    done: Tensor,
    gamma: float | Tensor,
    gae_lambda: float,
) -> tuple[Tensor, Tensor]:
    """Returns (advantages, returns), each (T, B). All inputs (T, B); gamma scalar or (T, B)."""
    not_term = (~terminated).to(value.dtype)
    not_done = (~done).to(value.dtype)
    gamma_t = torch.as_tensor(gamma, dtype=value.dtype).expand_as(value)
    # TD error: r_t + gamma * V(s_{t+1}) - V(s_t), with no bootstrap past a termination.
    delta = reward + gamma_t * not_term * next_value - value
    decay = gamma_t * gae_lambda * not_done
    adv = torch.from_numpy(reverse_scan(delta.cpu().numpy(), decay.cpu().numpy())).to(value.device)
    return adv, adv + value


def reverse_scan(x: np.ndarray, decay: np.ndarray) -> np.ndarray:
    """y_t = x_t + decay_t * y_{t+1}, y_T = 0, over axis 0. A NumPy loop: per-step torch ops on
    (B,) slices cost several microseconds each, NumPy's well under one."""
    y = np.empty_like(x)
    running = np.zeros_like(x[0])
    for t in range(x.shape[0] - 1, -1, -1):
        running = x[t] + decay[t] * running
        y[t] = running
    return y


def group_relative(returns: Tensor, group: Tensor, eps: float = 1e-8) -> Tensor:
    """GRPO advantage: (R_i - mean_g R) / (std_g R + eps) within each group id. Shapes (N,)."""
    adv = torch.empty_like(returns)
    for g in group.unique():
        m = group == g
        r = returns[m]
        adv[m] = (r - r.mean()) / (r.std(unbiased=False) + eps)
    return adv


def group_advantages(channels: dict[str, Tensor], group: Tensor, decoupled: bool = True, eps: float = 1e-8) -> Tensor:
    """Episode advantages (N,) from several reward channels, each (N,), e.g. dense return and success.

    decoupled=False (GRPO):  A = group_norm(sum_c R_c)
    decoupled=True  (GDPO):  A = batch_norm(sum_c group_norm(R_c))
A channel with a large scale (dense return) no longer drowns a small one (success) when each is
normalized within its group before the sum; the batch normalization keeps A's scale fixed as
the number of channels changes.
    """
    if not channels:
        raise ValueError("group_advantages: no reward channels")
    if not decoupled:
        return group_relative(torch.stack(list(channels.values())).sum(0), group, eps)
    total = torch.stack([group_relative(r, group, eps) for r in channels.values()]).sum(0)
    return (total - total.mean()) / (total.std(unbiased=False) + eps)
