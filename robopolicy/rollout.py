"""Experience sources: anything with ``collect() -> Rollout``. LocalRollouts steps simulators.

The trainer does not know where rollouts come from (simulators here, the fleet's
FleetRollouts elsewhere): both yield time-major ``Rollout``s.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

import torch
from robopolicy.policy import Policy
from robopolicy.types import BatchedEnv, EpisodeStats, Obs, Rollout


class ExperienceSource(Protocol):
    num_envs: int

    def collect(self, policy: Policy) -> Rollout: ...


class LocalRollouts:
    """Collects ``n_steps`` policy steps from a batched env with the current policy.

    Keeps the env's current observation between calls, so consecutive rollouts continue
    the same episodes (as PPO expects). Finished episodes go to ``recent_episodes``.
    """

    def __init__(self, env: BatchedEnv, n_steps: int, seed: int | None = 0, history: int = 100):
        self.env, self.n_steps = env, n_steps
        self.num_envs = env.num_envs
        self.obs: Obs = env.reset(seed=seed)
        self.policy_version = 0
        self.recent_episodes: deque[EpisodeStats] = deque(maxlen=history)
        self.new_episodes: list[EpisodeStats] = []
        self.env_steps = 0

    @torch.no_grad()
    def collect(self, policy: Policy) -> Rollout:
        T, B = self.n_steps, self.num_envs
        obs_buf = {k: torch.empty((T, *v.shape), dtype=v.dtype) for k, v in self.obs.items()}
        final_buf = {k: torch.empty_like(v) for k, v in obs_buf.items()}
        first = policy.act(self.obs)
        act_buf = torch.empty((T, *first.actions.shape))
        trace_buf = torch.empty((T, *first.trace.shape))
        logp_buf = torch.empty((T, *first.logp.shape))
        reward = torch.empty((T, B))
        terminated = torch.empty((T, B), dtype=torch.bool)
        truncated = torch.empty((T, B), dtype=torch.bool)
        chunk_steps = torch.empty((T, B), dtype=torch.int64)
        self.new_episodes = []
        sample = first
        for t in range(T):
            if t > 0:
                sample = policy.act(self.obs)
            for k, v in self.obs.items():
                obs_buf[k][t] = v
            act_buf[t], trace_buf[t], logp_buf[t] = sample.actions, sample.trace, sample.logp
            step = self.env.step(sample.actions)
            reward[t], terminated[t], truncated[t], chunk_steps[t] = (
                step.reward, step.terminated, step.truncated, step.chunk_steps
            )
            for k, v in step.final_obs.items():
                final_buf[k][t] = v
            self.new_episodes.extend(step.episodes)
            self.obs = step.obs
        self.recent_episodes.extend(self.new_episodes)
        self.env_steps += int(chunk_steps.sum())
        return Rollout(
            obs=obs_buf,
            actions=act_buf,
            trace=trace_buf,
            logp=logp_buf,
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            chunk_steps=chunk_steps,
            policy_version=torch.full((T, B), self.policy_version, dtype=torch.int64),
            final_obs=final_buf,
        )


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

