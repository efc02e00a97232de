"""FleetRollouts: the fleet's stored episodes as time-major ``Rollout``s, an ExperienceSource like LocalRollouts.

    feed = EpisodeFeed()                                  the store calls feed.put(episode) after each commit
    source = FleetRollouts(feed, n_steps=200, lanes=8, max_policy_lag=1, stale="drop")
    rollout = source.collect(policy)                      blocks until T x B usable transitions arrived

Packing. Robots send whole episodes of any length; ``collect`` deals them to B lanes (the shortest lane first) and
cuts each lane at T steps. An episode's last step is ``truncated`` (the wire does not tell a time limit from a
true end; GAE bootstraps from the last state, which the robot sent as ``final_obs``), a cut inside an episode is
not done (GAE bootstraps from the next state, as at the end of a LocalRollouts rollout). Leftover episodes wait for
the next call.

Staleness. Every step carries the policy version that acted. With ``stale="drop"`` an episode that has a step older
than ``policy_version - max_policy_lag`` is dropped (counted in ``dropped_transitions``); with ``"importance"`` it
is kept and PPO's ratio pi_new / pi_behaviour (from the logp the robot sent) corrects it, clipped as usual.
Intervention steps carry no behaviour log-prob: their trace is the teleoperator's action in [-1, 1] and their logp
the current policy's, so PPO's ratio starts at 1 and the advantage weights them (Gaussian heads with H = 1 only).
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np
import torch

from fleet.store import StoredEpisode
from robopolicy.policy import Policy
from robopolicy.types import OBS_STATE, EpisodeStats, Rollout


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
        self.used_versions: list[int] = []  # policy lag of the last rollout's steps, for metrics
        self._backlog: list[StoredEpisode] = []
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def _usable(self, ep: StoredEpisode) -> bool:
        oldest = int(ep.piece.policy_version.min())
        if self.stale == "drop" and oldest < self.policy_version - self.max_policy_lag:
            self.dropped_transitions += ep.piece.num_steps
            return False
        return True

    def _gather(self) -> list[list[StoredEpisode]]:
        T, B = self.n_steps, self.num_envs
        lanes: list[list[StoredEpisode]] = [[] for _ in range(B)]
        fill = [0] * B
        pending = [ep for ep in self._backlog if self._usable(ep)]
        self._backlog = []
        while min(fill) < T:
            if not pending:
                if self._stop.is_set():
                    raise CollectStopped
                for ep in self.feed.take(timeout=0.5):
                    p = ep.piece
                    self.recent_episodes.append(EpisodeStats(float(p.reward.sum()), p.num_steps, ep.success))
                    if self._usable(ep):
                        pending.append(ep)
                continue
            ep = pending.pop(0)
            b = int(np.argmin(fill))
            lanes[b].append(ep)
            fill[b] += ep.piece.num_steps
        self._backlog = pending
        return lanes

    @torch.no_grad()
    def collect(self, policy: Policy) -> Rollout:
        T, B = self.n_steps, self.num_envs
        lanes = self._gather()
        probe = policy.act({OBS_STATE: torch.zeros(1, policy.config.state_dim)})
        trace_shape, S = tuple(probe.trace.shape[1:]), int(probe.logp.shape[1])
        A = policy.config.action_dim
        cols = {k: [] for k in ("state", "final", "action", "trace", "logp", "reward", "trunc", "version", "inter")}
        for lane in lanes:
            lane_cols = {k: [] for k in cols}
            for ep in lane:
                p = ep.piece
                n = p.num_steps
                lane_cols["state"].append(p.state)
                lane_cols["final"].append(np.concatenate([p.state[1:], p.state[-1:]]))
                lane_cols["action"].append(p.action)
                lane_cols["trace"].append(p.trace)
                lane_cols["logp"].append(p.logp)
                lane_cols["reward"].append(p.reward)
                trunc = np.zeros(n, bool)
                trunc[-1] = True
                lane_cols["trunc"].append(trunc)
                lane_cols["version"].append(p.policy_version)
                lane_cols["inter"].append(p.intervention)
            for k, col in cols.items():
                col.append(np.concatenate(lane_cols[k])[:T])
        arr = {k: torch.from_numpy(np.stack(v, axis=1).copy()) for k, v in cols.items()}  # (T, B, ...)
        if arr["trace"].shape[-1] != int(np.prod(trace_shape)):
            raise ValueError(f"fleet trace: robots sent {arr['trace'].shape[-1]} values per step, the policy's trace "
                             f"is {trace_shape}; robots and learner must run the same head")
        trace = arr["trace"].reshape(T, B, *trace_shape)
        logp = arr["logp"].reshape(T, B, 1).expand(T, B, S).clone() / S
        inter = arr["inter"]
        if inter.any():
            trace, logp = self._intervention_traces(policy, arr, trace, logp, trace_shape)
        actions = arr["action"].reshape(T, B, 1, A)
        self.used_versions = (self.policy_version - arr["version"]).flatten().tolist()
        obs = {OBS_STATE: arr["state"]}
        return Rollout(obs=obs, actions=actions, trace=trace, logp=logp, reward=arr["reward"],
                       terminated=torch.zeros(T, B, dtype=torch.bool), truncated=arr["trunc"],
                       chunk_steps=torch.ones(T, B, dtype=torch.int64), policy_version=arr["version"],
                       final_obs={OBS_STATE: arr["final"]}, masks={"intervention": inter})

    def _intervention_traces(self, policy: Policy, arr, trace, logp, trace_shape):
        A = policy.config.action_dim
        if trace_shape != (1, A):
            raise ValueError(f"intervention steps need a trace of shape (1, {A}) (Gaussian head, H = 1), "
                             f"the policy's is {trace_shape}")
        m = arr["inter"]
        a = policy.scaler.from_env(arr["action"][m]).clamp(-0.999, 0.999)  # the teleoperator's action in [-1, 1]
        # the pre-squash sample that yields it: itself under clip squashing, atanh under tanh
        squash = getattr(getattr(policy.head, "config", None), "squash", "clip")
        t = (torch.atanh(a) if squash == "tanh" else a).reshape(-1, *trace_shape)
        trace = trace.clone()
        trace[m] = t
        logp = logp.clone()
        logp[m] = policy.log_prob({OBS_STATE: arr["state"][m]}, t)
        return trace, logp
