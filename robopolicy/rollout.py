"""Experience sources: anything with ``collect() -> Rollout``. LocalRollouts steps simulators.

The trainer does not know where rollouts come from (simulators here, the fleet's
FleetRollouts elsewhere): both yield time-major ``Rollout``s.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

import torch

from robopolicy.numpy_actor import NumpyGaussianActor
from robopolicy.policy import Policy
from robopolicy.types import BatchedEnv, EpisodeStats, Obs, Rollout


class ExperienceSource(Protocol):
    """What the trainer needs from a source of rollouts (simulators here, the fleet elsewhere)."""

    num_envs: int
    policy_version: int  # version of the weights the next rollout will come from
    recent_episodes: deque[EpisodeStats]  # finished episodes, newest last, for logging

    def collect(self, policy: Policy) -> Rollout: ...


class LocalRollouts:
    """Collects ``n_steps`` policy steps from a batched env with the current policy.

    Keeps the env's current observation between calls, so consecutive rollouts continue
    the same episodes (as PPO expects). Finished episodes go to ``recent_episodes``. ``after_collect`` runs after
    each rollout (e.g. a run-wide reset curriculum's sync); the metrics it returns are in ``source_metrics``.
    """

    def __init__(self, env: BatchedEnv, n_steps: int, seed: int | None = 0, history: int = 100,
                 after_collect: Callable[[], dict[str, float]] | None = None):
        self.env, self.n_steps, self.after_collect = env, n_steps, after_collect
        self.source_metrics: dict[str, float] = {}
        self.num_envs = env.num_envs
        self.obs: Obs = env.reset(seed=seed)
        self.policy_version = 0
        self.recent_episodes: deque[EpisodeStats] = deque(maxlen=history)
        self.new_episodes: list[EpisodeStats] = []
        self.env_steps = 0

    @torch.no_grad()
    def collect(self, policy: Policy) -> Rollout:
        # The stepping loop runs in inference mode (cheaper per op); stacking happens outside it,
        # so the rollout holds ordinary tensors that the update may save for backward.
        with torch.inference_mode():
            lists = self._step_loop(policy)
        obs_l, act_l, trace_l, logp_l, rew_l, term_l, trunc_l, steps_l, final_l = lists
        self.recent_episodes.extend(self.new_episodes)
        if self.after_collect is not None:
            self.source_metrics = self.after_collect()
        chunk_steps = torch.stack(steps_l)
        self.env_steps += int(chunk_steps.sum())
        T, B = self.n_steps, self.num_envs
        return Rollout(
            obs=_stack_obs(obs_l),
            actions=torch.stack(act_l),
            trace=torch.stack(trace_l),
            logp=torch.stack(logp_l),
            reward=torch.stack(rew_l),
            terminated=torch.stack(term_l),
            truncated=torch.stack(trunc_l),
            chunk_steps=chunk_steps,
            policy_version=torch.full((T, B), self.policy_version, dtype=torch.int64),
            final_obs=_stack_obs(final_l),
        )

    def _step_loop(self, policy: Policy) -> tuple[list, ...]:
        # Per-step results go to Python lists and are stacked once at the end: an indexed
        # write into a preallocated tensor costs a few microseconds per call on CPU, which
        # adds up to a large share of a single-env rollout.
        obs_l: list[Obs] = []
        final_l: list[Obs] = []
        act_l, trace_l, logp_l, rew_l, term_l, trunc_l, steps_l = [], [], [], [], [], [], []
        self.new_episodes = []
        # A plain Gaussian MLP policy acts through NumPy views of its own weights (same distribution, same
        # torch random stream): batch-1 torch dispatch is the larger part of acting (robopolicy/numpy_actor.py).
        fast = NumpyGaussianActor.for_policy(policy)
        act = policy.act if fast is None else fast.act
        obs = self.obs
        for _ in range(self.n_steps):
            sample = act(obs)
            step = self.env.step(sample.actions)
            obs_l.append(obs)
            act_l.append(sample.actions)
            trace_l.append(sample.trace)
            logp_l.append(sample.logp)
            rew_l.append(step.reward)
            term_l.append(step.terminated)
            trunc_l.append(step.truncated)
            steps_l.append(step.chunk_steps)
            final_l.append(step.final_obs)
            if step.episodes:
                self.new_episodes.extend(step.episodes)
            obs = step.obs
        self.obs = obs
        return obs_l, act_l, trace_l, logp_l, rew_l, term_l, trunc_l, steps_l, final_l


def _stack_obs(obs_list: list[Obs]) -> Obs:
    return {k: torch.stack([o[k] for o in obs_list]) for k in obs_list[0]}


def episode_summary(episodes: list[EpisodeStats] | deque[EpisodeStats]) -> dict[str, float]:
    """Mean return / length / success of finished episodes (empty dict when none)."""
    if not episodes:
        return {}
    rets = torch.tensor([e.ret for e in episodes])
    out = {"episode/return": float(rets.mean()), "episode/length": float(sum(e.length for e in episodes) / len(episodes))}
    successes = [e.success for e in episodes if e.success is not None]
    if successes:
        out["episode/success"] = float(sum(successes) / len(successes))
    return out

