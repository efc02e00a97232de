"""FleetRollouts: the fleet's stored episodes as time-major ``Rollout``s, an ExperienceSource like LocalRollouts.

    feed = EpisodeFeed()                                  the store calls feed.put(episode) after each commit
    source = FleetRollouts(feed, n_steps=200, lanes=8, max_policy_lag=1, stale="drop")
    rollout = source.collect(policy)                      blocks until T x B usable policy steps arrived

Policy steps. Robots record control steps; a policy step is one action chunk (the rows from a ``chunk_step`` 0 to
the next, at most H). ``policy_steps`` turns an episode into the chunk-level MDP that ``ActionChunk`` +
``LocalRollouts`` give the in-process trainer, field by field:
    obs          state at the chunk's first row                       (T, B, D)
    actions      the executed actions, then the planned tail not run  (T, B, H, A)   (teleoperator's where it acted)
    trace, logp  the robot's sample at the chunk's first row          (T, B, ...), (T, B, S) per decision
    reward       sum of the executed rows' rewards (undiscounted; PPO discounts the next step by gamma ** k)
    chunk_steps  k, rows executed (< H only where the episode ended)  (T, B)
    final_obs    state after the chunk (its own last state at the episode's end: the wire sends no final obs)

Packing. Robots send whole episodes of any length; ``collect`` deals them to B lanes (the shortest lane first) and
cuts each lane at T policy steps. An episode's last step is ``truncated`` (the wire does not tell a time limit from
a true end; GAE bootstraps from the last state), a cut inside an episode is not done (GAE bootstraps from the next
state, as at the end of a LocalRollouts rollout). Leftover episodes wait for the next call.

Staleness. Every step carries the policy version that acted. With ``stale="drop"`` an episode that has a step older
than ``policy_version - max_policy_lag`` is dropped (counted in ``dropped_transitions``); with ``"importance"`` it
is kept and PPO's ratio pi_new / pi_behaviour (from the logp the robot sent) corrects it, clipped as usual.

Interventions. A policy step is an intervention (``masks["intervention"]``) when the teleoperator executed any of
its rows. What ran is then not the robot's sample, so PPO cannot use the robot's log-prob:
    Gaussian head   the trace is invertible per action: the executed rows' pre-squash values are replaced by the
                    teleoperator's actions (atanh under tanh squashing) and logp is the current policy's, so PPO's
                    ratio starts at 1 and the advantage weights the correction (any H).
    other heads     a denoising chain or token sequence that yields a given chunk cannot be recovered: the step is
                    left out of the PPO term (``masks["pg"]`` False), still trains the critic, and is an imitation
                    label for HG-DAgger / RECAP (actions = what the teleoperator executed).
"""

from __future__ import annotations

import logging
import threading
from collections import deque

import numpy as np
import torch

from fleet.store import StoredEpisode
from robopolicy.heads import GaussianHead
from robopolicy.policy import Policy
from robopolicy.types import OBS_STATE, EpisodeStats, Rollout

log = logging.getLogger(__name__)


def autonomous_success(piece) -> bool:
    """Success reached by the policy itself: a successful step before the first intervention step."""
    inter = np.flatnonzero(piece.intervention)
    end = int(inter[0]) if len(inter) else piece.num_steps
    return bool(piece.success[:end].any())


class EpisodeFeed:
    """Thread-safe hand-over of complete episodes from the store's commit thread to the trainer."""

    def __init__(self, maxlen: int = 100_000, history: int = 100):
        self._items: deque[StoredEpisode] = deque(maxlen=maxlen)
        self._cond = threading.Condition()
        # counted on arrival (not when a rollout takes them, which lags behind while a backlog waits)
        self.received_transitions = 0  # every step of every stored episode: the fleet's env steps
        # per episode: did the policy succeed before the teleoperator first took over (no intervention: = success)
        self.recent_autonomous: deque[bool] = deque(maxlen=history)

    def put(self, episode: StoredEpisode) -> None:
        with self._cond:
            self._items.append(episode)
            self.received_transitions += episode.piece.num_steps
            self.recent_autonomous.append(autonomous_success(episode.piece))
            self._cond.notify_all()

    def take(self, timeout: float) -> list[StoredEpisode]:
        with self._cond:
            self._cond.wait_for(lambda: bool(self._items), timeout=timeout)
            out = list(self._items)
            self._items.clear()
        return out


class CollectStopped(Exception):
    """``stop()`` was called while ``collect`` waited for data."""


def policy_steps(piece, H: int) -> dict[str, np.ndarray]:
    """An episode's control steps as N policy steps (see the module docstring); raises ValueError when its chunk
    rows do not fit H (a robot running another head)."""
    n, A = piece.num_steps, piece.action.shape[1]
    pos = np.zeros(n, np.int64) if piece.chunk_step is None else piece.chunk_step.astype(np.int64)
    if pos[0] != 0:
        raise ValueError(f"chunk_step: the episode starts at {int(pos[0])}, expected 0")
    if (pos >= H).any():
        raise ValueError(f"chunk_step: {int(pos.max())} does not fit the learner's chunk H={H}")
    starts = np.flatnonzero(pos == 0)
    ends = np.append(starts[1:], n)
    cid = np.cumsum(pos == 0) - 1  # policy step of each row
    N = len(starts)
    if H == 1:
        actions = piece.action[:, None].copy()
    else:
        if piece.chunk_action is None or piece.chunk_action.shape[1] != H * A:
            width = None if piece.chunk_action is None else piece.chunk_action.shape[1]
            raise ValueError(f"chunk_action: {width} values per row, the learner's chunk needs H*A = {H * A}")
        actions = piece.chunk_action[starts].reshape(N, H, A).copy()  # planned chunk ...
        actions[cid, pos] = piece.action  # ... with what actually ran over its executed part
    inter_rows = np.zeros((N, H), bool)
    inter_rows[cid, pos] = piece.intervention
    trunc = np.zeros(N, bool)
    trunc[-1] = True
    return {"state": piece.state[starts], "final": piece.state[np.minimum(ends, n - 1)], "action": actions,
            "trace": piece.trace[starts], "logp": piece.logp.reshape(n, -1)[starts],
            "reward": np.add.reduceat(piece.reward, starts), "steps": ends - starts, "trunc": trunc,
            "version": piece.policy_version[starts], "inter": inter_rows.any(1), "inter_rows": inter_rows}


class FleetRollouts:
    def __init__(self, feed: EpisodeFeed, n_steps: int, lanes: int, max_policy_lag: int = 1, stale: str = "drop",
                 history: int = 100):
        if stale not in ("drop", "importance"):
            raise ValueError(f"stale: {stale!r}, expected drop or importance")
        self.feed, self.n_steps, self.num_envs = feed, n_steps, lanes
        self.max_policy_lag, self.stale = max_policy_lag, stale
        self.policy_version = 0
        self.recent_episodes: deque[EpisodeStats] = deque(maxlen=history)
        self.dropped_transitions = 0
        self.malformed_episodes = 0  # episodes whose chunk rows do not fit the learner's head (logged, skipped)
        self.used_versions: list[int] = []  # policy lag of the last rollout's steps, for metrics
        self._backlog: list[tuple[StoredEpisode, dict]] = []
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def _usable(self, ep: StoredEpisode) -> bool:
        oldest = int(ep.piece.policy_version.min())
        if self.stale == "drop" and oldest < self.policy_version - self.max_policy_lag:
            self.dropped_transitions += ep.piece.num_steps
            return False
        return True

    def _arrivals(self, H: int) -> list[tuple[StoredEpisode, dict]]:
        """Newly stored episodes as (episode, policy steps); waits up to 0.5 s; CollectStopped after ``stop()``."""
        if self._stop.is_set():
            raise CollectStopped
        out = []
        for ep in self.feed.take(timeout=0.5):
            p = ep.piece
            self.recent_episodes.append(EpisodeStats(float(p.reward.sum()), p.num_steps, ep.success))
            if not self._usable(ep):
                continue
            try:
                out.append((ep, policy_steps(p, H)))
            except ValueError as err:
                self.malformed_episodes += 1
                log.warning("skipping episode %s/%s: %s", ep.robot_id, ep.episode_id, err)
        return out

    def _gather(self, H: int) -> list[list[dict]]:
        T, B = self.n_steps, self.num_envs
        lanes: list[list[dict]] = [[] for _ in range(B)]
        fill = [0] * B
        pending = [item for item in self._backlog if self._usable(item[0])]
        self._backlog = []
        while min(fill) < T:
            if not pending:
                pending.extend(self._arrivals(H))
                continue
            _, steps = pending.pop(0)
            b = int(np.argmin(fill))
            lanes[b].append(steps)
            fill[b] += len(steps["steps"])
        self._backlog = pending
        return lanes

    @torch.no_grad()
    def collect(self, policy: Policy) -> Rollout:
        T = self.n_steps
        lanes = self._gather(policy.config.chunk)
        cols = {k: np.stack([np.concatenate([ep[k] for ep in lane])[:T] for lane in lanes], axis=1)
                for k in lanes[0][0]}  # (T, B, ...)
        rollout = build_rollout(policy, {k: torch.from_numpy(v.copy()) for k, v in cols.items()})
        self.used_versions = (self.policy_version - rollout.policy_version).flatten().tolist()
        return rollout


def build_rollout(policy: Policy, arr: dict[str, torch.Tensor]) -> Rollout:
    """A Rollout from time-major policy-step columns (T, B, ...) of ``policy_steps``; checks that the robots ran the
    learner's head (trace size, S) and handles intervention steps (module docstring)."""
    T, B = arr["reward"].shape
    probe = policy.act({OBS_STATE: torch.zeros(1, policy.config.state_dim)})
    trace_shape, S = tuple(probe.trace.shape[1:]), int(probe.logp.shape[1])
    if arr["trace"].shape[-1] != int(np.prod(trace_shape)):
        raise ValueError(f"fleet trace: robots sent {arr['trace'].shape[-1]} values per step, the policy's trace "
                         f"is {trace_shape}; robots and learner must run the same head")
    if arr["logp"].shape[-1] != S:
        raise ValueError(f"fleet logp: robots sent {arr['logp'].shape[-1]} log-probs per policy step, the policy "
                         f"has S={S} decisions; robots and learner must run the same head")
    trace = arr["trace"].reshape(T, B, *trace_shape).to(probe.trace.dtype)  # token ids travel as exact floats
    logp = arr["logp"].clone()
    inter = arr["inter"]
    masks = {"intervention": inter}
    if inter.any():
        if isinstance(policy.head, GaussianHead):
            trace, logp = _gaussian_intervention_traces(policy, arr, trace, logp)
        else:
            masks["pg"] = ~inter
    return Rollout(obs={OBS_STATE: arr["state"]}, actions=arr["action"], trace=trace, logp=logp,
                   reward=arr["reward"], terminated=torch.zeros(T, B, dtype=torch.bool), truncated=arr["trunc"],
                   chunk_steps=arr["steps"].to(torch.int64), policy_version=arr["version"],
                   final_obs={OBS_STATE: arr["final"]}, masks=masks)


def _gaussian_intervention_traces(policy: Policy, arr, trace, logp):
    """Replace the executed teleoperator rows of each intervention step's pre-squash sample (B, H, A) by the values
    that squash to the teleoperator's actions; logp of those steps = the current policy's."""
    rows = arr["inter_rows"]  # (T, B, H)
    a = policy.scaler.from_env(arr["action"][rows]).clamp(-0.999, 0.999)  # the teleoperator's actions in [-1, 1]
    trace = trace.clone()
    # the pre-squash value that yields it: itself under clip squashing, atanh under tanh
    trace[rows] = torch.atanh(a) if policy.head.config.squash == "tanh" else a
    m = arr["inter"]
    logp[m] = policy.log_prob({OBS_STATE: arr["state"][m]}, trace[m])
    return trace, logp
