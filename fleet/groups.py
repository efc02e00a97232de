"""GRPO on fleet data: reset seeds handed out by the learner, episodes grouped by (task, seed).

    seeds = SeedDispenser(group_size=G)            learner: EpisodeSeed hands each seed to G episodes of a task
    source = FleetGroupRollouts(feed, lanes=B, group_size=G)
    rollout = source.collect(policy)               B / G complete groups, one episode per lane, advantages set

Group-relative advantages need several rollouts from the same initial state. A simulated robot asks the learner
for the seed of its next episode (``EpisodeSeed``); the dispenser gives one seed to G consecutive requests of the
same task, whichever robots they come from, so a group is G robots in parallel, one robot G times in sequence, or
anything between. Each episode records its seed; the learner groups stored episodes by (task, reset seed), and a
group is used once it holds G episodes:

    GRPO      A_i = (R_i - mean_g R) / (std_g R + eps), R_i the episode's return    (advantages.group_relative)
    GDPO      channels return and success (0 / 1), each normalized within the group, the sum over the batch
    A_t,i     = A_i for every policy step t of episode i, shared by its S decisions

(``robopolicy.group_rollouts.GroupRollouts`` is the same for local simulators, except that its GRPO also adds the
success channel to the return when the env reports it). Lanes are episodes: T is the longest
episode of the batch in policy steps, shorter ones are padded with their last state, masked (``masks["valid"]``
False, advantage 0) and left out of the pg term.

Real robots cannot be reset to a seed: their episodes carry none, and G consecutive episodes of the same task form a
group. Their initial states differ, so such advantages are approximate (they also credit the luck of the start).

With ``stale="drop"`` an episode older than ``max_policy_lag`` versions leaves its group (counted in
``dropped_transitions``); a group then waits for a replacement that, for seeded groups, never comes once the
dispenser moved on, so it ages out whole. At most ``max_open_groups`` groups wait at a time (oldest dropped first).
"""

from __future__ import annotations

import logging
import threading
from collections import deque

import numpy as np
import torch

from fleet.rollouts import CollectStopped, EpisodeFeed, build_rollout, policy_steps
from fleet.store import StoredEpisode
from robopolicy.advantages import group_advantages
from robopolicy.policy import Policy
from robopolicy.types import EpisodeStats, Rollout

log = logging.getLogger(__name__)


class SeedDispenser:
    """``next(task)``: the current seed of ``task``, handed to ``group_size`` callers before the next one."""

    def __init__(self, group_size: int, first_seed: int = 0):
        if group_size < 2:
            raise ValueError(f"group_size: {group_size}, expected >= 2")
        self.group_size, self.first_seed = group_size, first_seed
        self._state: dict[str, tuple[int, int]] = {}  # task -> (seed, times handed out)
        self._lock = threading.Lock()

    def next(self, task: str) -> int:
        with self._lock:
            seed, handed = self._state.get(task, (self.first_seed, 0))
            if handed == self.group_size:
                seed, handed = seed + 1, 0
            self._state[task] = (seed, handed + 1)
            return seed


class FleetGroupRollouts:
    """``collect(policy) -> Rollout`` with ``rollout.advantages`` from complete groups; see the module docstring."""

    def __init__(self, feed: EpisodeFeed, lanes: int, group_size: int, max_policy_lag: int = 1,
                 stale: str = "drop", decoupled: bool = False, history: int = 100):
        if group_size < 2 or lanes % group_size:
            raise ValueError(f"group_size: {group_size} must be >= 2 and divide train.lanes={lanes}")
        if stale not in ("drop", "importance"):
            raise ValueError(f"stale: {stale!r}, expected drop or importance")
        self.feed, self.num_envs, self.group_size = feed, lanes, group_size
        self.max_policy_lag, self.stale, self.decoupled = max_policy_lag, stale, decoupled
        self.policy_version = 0
        self.recent_episodes: deque[EpisodeStats] = deque(maxlen=history)
        self.dropped_transitions = 0
        self.malformed_episodes = 0
        self.used_versions: list[int] = []
        self.last_groups: list[tuple[str, int | None]] = []  # (task, seed) of the last rollout's groups, in order
        self._open: dict[tuple[str, int | None], list[tuple[StoredEpisode, dict]]] = {}  # filling groups
        self._ready: list[list[tuple[StoredEpisode, dict]]] = []
        self.max_open_groups = 64 * (lanes // group_size)
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    @staticmethod
    def group_key(ep: StoredEpisode) -> tuple[str, int | None]:
        """Episodes of one group share the task and the reset seed (None: a robot that cannot be seeded)."""
        return ep.task, ep.reset_seed

    def _stale(self, ep: StoredEpisode) -> bool:
        return self.stale == "drop" and int(ep.piece.policy_version.min()) < self.policy_version - self.max_policy_lag

    def _prune(self) -> None:
        """Drop stale members (a ready group that loses one waits for a replacement again), and the oldest open
        groups beyond a bound (with stale=importance nothing ages out)."""
        groups = self._ready + list(self._open.values())
        self._ready, self._open = [], {}
        for g in groups:
            self.dropped_transitions += sum(ep.piece.num_steps for ep, _ in g if self._stale(ep))
            for member in (m for m in g if not self._stale(m[0])):
                self._add(member)
        while len(self._open) > self.max_open_groups:
            g = self._open.pop(next(iter(self._open)))  # dicts keep insertion order: the oldest group first
            self.dropped_transitions += sum(ep.piece.num_steps for ep, _ in g)

    def _add(self, member: tuple[StoredEpisode, dict]) -> None:
        """Into its open group; a group that reaches group_size is ready."""
        key = self.group_key(member[0])
        group = self._open.setdefault(key, [])
        group.append(member)
        if len(group) == self.group_size:
            self._ready.append(self._open.pop(key))

    def _gather(self, H: int) -> list[list[tuple[StoredEpisode, dict]]]:
        want = self.num_envs // self.group_size
        self._prune()
        while len(self._ready) < want:
            if self._stop.is_set():
                raise CollectStopped
            for ep in self.feed.take(timeout=0.5):
                p = ep.piece
                self.recent_episodes.append(EpisodeStats(float(p.reward.sum()), p.num_steps, ep.success))
                try:
                    steps = policy_steps(p, H)
                except ValueError as err:
                    self.malformed_episodes += 1
                    log.warning("skipping episode %s/%s: %s", ep.robot_id, ep.episode_id, err)
                    continue
                if self._stale(ep):
                    self.dropped_transitions += p.num_steps
                    continue
                self._add((ep, steps))
        groups, self._ready = self._ready[:want], self._ready[want:]
        return groups

    @torch.no_grad()
    def collect(self, policy: Policy) -> Rollout:
        groups = self._gather(policy.config.chunk)
        self.last_groups = [self.group_key(g[0][0]) for g in groups]
        members = [item for g in groups for item in g]  # lane b = episode b; group of lane b = b // G
        T = max(len(steps["steps"]) for _, steps in members)
        cols = {k: np.stack([_pad(steps[k], T) for _, steps in members], axis=1) for k in members[0][1]}
        valid = np.stack([np.arange(T) < len(steps["steps"]) for _, steps in members], axis=1)  # (T, B)
        cols["trunc"] = cols["trunc"] | ~valid  # padding is its own (empty) episode: nothing leaks into GAE
        cols["reward"] = np.where(valid, cols["reward"], 0.0).astype(np.float32)
        cols["inter"] = cols["inter"] & valid
        cols["inter_rows"] = cols["inter_rows"] & valid[..., None]
        rollout = build_rollout(policy, {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in cols.items()})
        channels = {"return": torch.tensor([float(ep.piece.reward.sum()) for ep, _ in members])}
        if self.decoupled:  # GDPO: success is its own channel, normalized within the group before the sum
            channels["success"] = torch.tensor([float(ep.success or ep.piece.success.any()) for ep, _ in members])
        group = torch.arange(len(members)) // self.group_size
        adv = group_advantages(channels, group, decoupled=self.decoupled)  # (B,)
        valid_t = torch.from_numpy(valid)
        rollout.masks["valid"] = valid_t
        rollout.masks["pg"] = valid_t & rollout.masks.pop("pg", torch.ones_like(valid_t))
        rollout.advantages = adv.unsqueeze(0) * valid_t
        self.used_versions = (self.policy_version - rollout.policy_version[valid_t]).tolist()
        return rollout


def _pad(x: np.ndarray, T: int) -> np.ndarray:
    """(N, ...) -> (T, ...) repeating the last row (masked steps)."""
    return np.concatenate([x, np.repeat(x[-1:], T - len(x), axis=0)]) if len(x) < T else x
