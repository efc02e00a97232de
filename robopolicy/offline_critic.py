"""The offline critic phase of offline-to-online fine-tuning: V regressed on the demos' returns.

    G_i = r_i + gamma G_{i+1}  within an episode, G = 0 past its last frame     (per env step)
    V(o_i) <- G_i / std(G)

std(G) is what PPO's ReturnNormalizer divides rewards by online; seeding that normalizer with the
demo returns puts the pretrained critic and the first online targets on one scale, so the first
online advantages are informative instead of the noise of a fresh critic (which is what makes
naive BC -> PPO dip). Demos recorded with ``stop_on_success=false`` cover whole episodes, as the
online ones do; demos cut at their first success undervalue states near it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import Tensor

from robopolicy.critic import ValueCritic
from robopolicy.normalizer import ObsNormalizer, ReturnNormalizer
from robopolicy.objective.value import explained_variance
from robopolicy.types import Obs


def fit_by_minibatches(loss_fn: Callable[[Tensor], Tensor], params: Iterable[Tensor], n: int, steps: int, lr: float,
                       batch_size: int, generator: torch.Generator) -> None:
    """``steps`` Adam steps on ``loss_fn(idx)`` over minibatches of row indices idx drawn with replacement from n rows."""
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        loss = loss_fn(torch.randint(0, n, (min(batch_size, n),), generator=generator))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def discounted_returns(reward: Tensor, episode: Tensor, gamma: float) -> Tensor:
    """(N,) returns-to-go of frames stored episode after episode, in time order within each."""
    r, ep = reward.double().numpy(), episode.numpy()
    out = np.empty_like(r)
    g = 0.0
    for i in range(len(r) - 1, -1, -1):
        if i == len(r) - 1 or ep[i + 1] != ep[i]:
            g = 0.0  # last frame of an episode: nothing after it
        g = r[i] + gamma * g
        out[i] = g
    return torch.from_numpy(out).float()


def pretrain_critic(
    critic: ValueCritic,
    obs_normalizer: ObsNormalizer,
    obs: Obs,
    returns: Tensor,
    return_normalizer: ReturnNormalizer | None,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int = 0,
) -> dict[str, float]:
    """Fit ``critic`` to ``returns`` (N,) (scaled as PPO will scale them) with Adam; returns metrics."""
    if return_normalizer is not None:
        return_normalizer.rms.update(returns.reshape(-1, 1))
        scale = float(torch.sqrt(return_normalizer.rms.var + return_normalizer.eps))
    else:
        scale = 1.0
    target = returns / scale
    with torch.no_grad():
        norm_obs = obs_normalizer(obs)
    fit_by_minibatches(lambda idx: (critic({k: v[idx] for k, v in norm_obs.items()}) - target[idx]).square().mean(),
                       critic.parameters(), target.shape[0], steps, lr, batch_size, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        pred = critic(norm_obs)
    return {"offline/critic_loss": float((pred - target).square().mean()),
            "offline/critic_explained_variance": explained_variance(pred, target),
            "offline/return_scale": scale}
