"""Sim-based policy ranking, the scores (VSDR: "validate on sim, detect on real", Leibovich et al., ICRA 2022).

A set of candidate policies is to be ranked by their success on a real robot without running them there.
Two signals are cheap:
    sim success  s_i   success rate of candidate i in simulation (validate on sim)
    OOD score    o_i   how far candidate i is from a small fixed set of episodes recorded once on the real
                       robot (detect on real); lower is better
VSDR's finding is that the OOD score alone is noisy and sim success alone ignores the reality gap, while the
two together rank well. Here (no images: our candidates observe state vectors) the OOD scores are

    behaviour   mean_t,h,a (pi_i(o_t)_h,a - a*_t,h,a)^2 / 2^2   the candidate's deterministic chunk on the
                recorded real observations o_t against the recorded actions a*, both in [-1, 1] units
                (so 1.0 = always off by the whole range); it grows when the real sensors' noise and bias
                push o_t outside what the candidate learned to map to the right action
    input       mean_t,d ((o_t,d - mu_d) / sigma_d)^2           squared z-score of the recorded real states
                under the candidate's own observation statistics (the normalizer saved with it): a diagonal
                Mahalanobis distance of the real data from the candidate's training distribution

and the combinations (``combine``):

    filter      keep the candidates whose sim success is >= keep * max_i s_i (validated in sim), order
                them by OOD score; the others follow, ordered by sim success (VSDR's validate-then-detect)
    rank_mean   order by the mean of the two ranks (sim success descending, OOD ascending)

All scores are numpy arrays over candidates; higher ``predicted`` is better. No envs are imported here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from robopolicy.policy import Policy
from robopolicy.types import OBS_STATE

OOD_METHODS = ("behaviour", "input")
COMBINE_METHODS = ("filter", "rank_mean")


def average_ranks(x: Sequence[float] | np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``x`` ascending, ties sharing the mean of their positions (as scipy.stats.rankdata)."""
    a = np.asarray(x, dtype=np.float64)
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(len(a), dtype=np.float64)
    ranks[order] = np.arange(1, len(a) + 1)
    for value in np.unique(a):  # ties: every member gets the mean of the positions they occupy
        tied = a == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman's rho: the Pearson correlation of the average ranks; nan when either side is constant."""
    if len(x) != len(y):
        raise ValueError(f"spearman: x has {len(x)} values, y has {len(y)}")
    if len(x) < 2:
        raise ValueError(f"spearman: need at least 2 values, got {len(x)}")
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float((rx**2).sum() * (ry**2).sum()))
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")


def check_policy_fits(policy: Policy, name: str, state_dim: int, action_dim: int, chunk: int | None = None) -> None:
    """ValueError naming the candidate and both shapes when it cannot act on the recorded data / the env."""
    cfg = policy.config
    wrong = []
    if cfg.state_dim != state_dim:
        wrong.append(f"state_dim {cfg.state_dim} (the data has {state_dim})")
    if cfg.action_dim != action_dim:
        wrong.append(f"action_dim {cfg.action_dim} (the data has {action_dim})")
    if chunk is not None and cfg.chunk != chunk:
        wrong.append(f"chunk {cfg.chunk} (the env runs chunks of {chunk})")
    if wrong:
        raise ValueError(f"candidate {name}: " + ", ".join(wrong))


@torch.no_grad()
def behaviour_ood_score(policy: Policy, obs: dict[str, Tensor], actions: Tensor, action_is_pad: Tensor | None = None,
                        batch_size: int = 4096, seed: int = 0) -> float:
    """Mean squared gap between the candidate's deterministic chunks on recorded observations and the recorded
    chunks, in [-1, 1] action units divided by the range (2): obs (N, D), actions (N, H, A), pads (N, H) bool.

    Only the first min(H_policy, H_data) steps of each chunk are compared; padded steps are left out."""
    was_training = policy.training
    policy.eval()
    torch.manual_seed(seed)  # a diffusion head's deterministic chain still starts from noise: fix it
    n = int(actions.shape[0])
    preds = []
    for start in range(0, n, batch_size):
        batch = {k: v[start:start + batch_size] for k, v in obs.items()}
        preds.append(policy.act(batch, deterministic=True).actions)
    policy.train(was_training)
    pred = torch.cat(preds)
    h = min(pred.shape[1], actions.shape[1])
    gap = (policy.scaler.from_env(pred[:, :h]) - policy.scaler.from_env(actions[:, :h].to(pred))) / 2.0
    err = gap.square().mean(-1)  # (N, h)
    if action_is_pad is not None:
        keep = ~action_is_pad[:, :h].to(err.device)
        return float(err[keep].mean())
    return float(err.mean())


@torch.no_grad()
def input_ood_score(policy: Policy, obs: dict[str, Tensor]) -> float:
    """Mean squared z-score of recorded states under the candidate's saved observation statistics (N, D) -> scalar.
    A candidate without observation normalization has no training statistics: ValueError."""
    if not policy.config.normalize_obs:
        raise ValueError("ood.method=input needs candidates that normalize observations (normalize_obs=true)")
    stats = policy.normalizer.stats_for(OBS_STATE)
    assert stats is not None  # every Policy normalizes its state (Policy.__init__ requires state_dim > 0)
    z = (obs[OBS_STATE].to(stats.mean) - stats.mean) * stats.inv_std
    return float(z.square().mean())


def sim_only_scores(sim_success: Sequence[float]) -> np.ndarray:
    """The baseline: rank by sim success alone (higher is better)."""
    return np.asarray(sim_success, dtype=np.float64)


def combine(sim_success: Sequence[float], ood: Sequence[float], method: str = "filter", keep: float = 0.8) -> np.ndarray:
    """Predicted score per candidate (higher is better): n - position in the predicted order (see module doc)."""
    s, o = np.asarray(sim_success, dtype=np.float64), np.asarray(ood, dtype=np.float64)
    if s.shape != o.shape:
        raise ValueError(f"combine: {len(s)} sim success values but {len(o)} OOD scores")
    if not np.isfinite(o).all():
        raise ValueError(f"combine: OOD scores must be finite, got {o.tolist()}")
    if method == "filter":
        if not 0.0 <= keep <= 1.0:
            raise ValueError(f"combine.keep: must be in [0, 1], got {keep}")
        validated = s >= keep * s.max()
        # Sort keys, most significant last (np.lexsort): validated first, then OOD among them, sim success below.
        secondary = np.where(validated, o, -s)
        order = np.lexsort((o, secondary, ~validated))
    elif method == "rank_mean":
        mean_rank = (average_ranks(-s) + average_ranks(o)) / 2.0
        order = np.lexsort((o, mean_rank))
    else:
        raise ValueError(f"combine.method: unknown {method!r}; expected one of {COMBINE_METHODS}")
    score = np.empty(len(s), dtype=np.float64)
    score[order] = np.arange(len(s), 0, -1)
    return score
