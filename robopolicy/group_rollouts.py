"""GroupRollouts: GRPO-style experience, groups of envs that start from the same initial state.

Each ``collect`` resets all B envs: the B / G groups get fresh seeds, the G envs of a group share
one, so (with a seedable env) they start identically and differ only by the policy's sampling.
Every env then runs one whole episode, T = ceil(max_episode_steps / H) policy steps; steps after
an env's episode ended are masked (advantage 0, ``masks["valid"]`` False). The episode's
advantage comes from its return relative to its group, per reward channel:

    channels  "return" (sum of rewards) and, where the env reports it, "success" (0 / 1)
    A_i       group_advantages(channels, group, decoupled)        GRPO (coupled) or GDPO
    A_{t,i}   = A_i for every step t of episode i                  shared by its S decisions

No critic is needed, which suits sparse success rewards where a value function learns slowly.
"""

from __future__ import annotations

import math
from collections import deque

import torch

from robopolicy.advantages import group_advantages
from robopolicy.policy import Policy
from robopolicy.rollout import LocalRollouts
from robopolicy.types import BatchedEnv, EpisodeStats, Rollout


class GroupRollouts:
    """``collect(policy) -> Rollout`` with ``rollout.advantages`` set; see the module docstring."""

    def __init__(self, env: BatchedEnv, max_episode_steps: int, group_size: int, seed: int = 0,
                 decoupled: bool = True, history: int = 100):
        if group_size < 2 or env.num_envs % group_size:
            raise ValueError(f"algo.group_size: {group_size} must be >= 2 and divide env.num_envs={env.num_envs}")
        self.env, self.group_size, self.seed, self.decoupled = env, group_size, seed, decoupled
        self.n_steps = math.ceil(max_episode_steps / env.execute)  # policy steps for a whole episode
        self.num_envs = env.num_envs
        self.policy_version = 0
        self.recent_episodes: deque[EpisodeStats] = deque(maxlen=history)
        self.rounds = 0
        self.env_steps = 0
        self._local = LocalRollouts(env, self.n_steps, seed=seed)  # its stepping loop; obs set per collect

    def group_ids(self) -> torch.Tensor:
        """(B,) group index of each env: 0 0 .. 0 1 1 .. 1 ..."""
        return torch.arange(self.num_envs) // self.group_size

    def collect(self, policy: Policy) -> Rollout:
        groups = self.num_envs // self.group_size
        base = self.seed + self.rounds * groups
        seeds = [base + int(g) for g in self.group_ids()]
        self.rounds += 1
        self._local.obs = self.env.reset(seed=seeds)
        rollout = self._local.collect(policy)
        self.env_steps += int(rollout.chunk_steps.sum())
        # The first finished episode of each env is the group member; later ones (after an early end) are masked.
        first: dict[int, EpisodeStats] = {}
        for ep in self._local.new_episodes:
            first.setdefault(ep.env_index, ep)
        if len(first) != self.num_envs:
            raise RuntimeError(f"GroupRollouts: {self.num_envs - len(first)} envs did not finish an episode in "
                               f"{self.n_steps} policy steps; set env.max_episode_steps to the episode limit")
        eps = [first[i] for i in range(self.num_envs)]
        self.recent_episodes.extend(eps)
        channels = {"return": torch.tensor([e.ret for e in eps], dtype=torch.float32)}
        if all(e.success is not None for e in eps):
            channels["success"] = torch.tensor([float(bool(e.success)) for e in eps])
        adv = group_advantages(channels, self.group_ids(), decoupled=self.decoupled)  # (B,)
        done = rollout.done
        # valid[t] = no episode end strictly before t: cumulative count of earlier dones is 0.
        valid = (done.cumsum(0) - done.to(torch.int64)) == 0
        rollout.masks["valid"] = valid
        rollout.advantages = adv.unsqueeze(0) * valid
        return rollout
