"""Key names, shapes and the containers that flow between env, policy and objective.

Glossary (used in every docstring of the package):
    B  batch (parallel envs or robots)        T  time (policy steps in a rollout)
    H  action chunk length                    A  action dimension
    S  inner decisions of one policy step     K  denoising / integration steps
    D  state dimension                        P  privileged state dimension
    C  reward channels

Observations are ``dict[str, Tensor]`` with LeRobot key names, batch first:
    observation.state       (B, D)  float32
    observation.images.<c>  (B, 3, H, W) uint8
    observation.privileged  (B, P)  float32   (simulation-only, for teachers and critics)
    task                    (B,)    instruction strings or token ids
Actions are always chunks (B, H, A) in the env's native units.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Protocol

import torch
from torch import Tensor

OBS_STATE = "observation.state"
OBS_IMAGES = "observation.images"  # prefix: observation.images.<camera>
OBS_PRIVILEGED = "observation.privileged"
TASK = "task"
ACTION = "action"

Obs = dict[str, Tensor]


@dataclass
class ActionSample:
    """What a head (and a policy) returns from ``sample``.

    actions: (B, H, A) in env units (the policy has already un-normalized them).
    trace:   the head's inner decisions, enough to recompute ``log_prob``
             (Gaussian: pre-squash sample (B, H, A); diffusion/flow: the chain; tokens: ids).
    logp:    (B, S) log-probability of each inner decision.
    """

    actions: Tensor
    trace: Tensor
    logp: Tensor


@dataclass
class Rollout:
    """Time-major experience, (T, B, ...) everywhere.

    ``next_value`` is what GAE bootstraps from after step t when the episode did NOT
    terminate: V(obs_{t+1}) normally, V(final_obs_t) at a truncation. It is filled by the
    algorithm (critic in one batched pass), not by the collector.
    """

    obs: Obs                      # each (T, B, ...)
    actions: Tensor               # (T, B, H, A)
    trace: Tensor                 # (T, B, ...)
    logp: Tensor                  # (T, B, S)
    reward: Tensor                # (T, B) or (T, B, C)
    terminated: Tensor            # (T, B) bool: true end, no bootstrap
    truncated: Tensor             # (T, B) bool: time limit, bootstrap from final_obs
    chunk_steps: Tensor           # (T, B) env steps executed by this policy step (<= H)
    policy_version: Tensor        # (T, B) int64
    final_obs: Obs                # each (T, B, ...): obs after step t (== obs[t+1] unless done)
    value: Tensor | None = None   # (T, B)
    next_value: Tensor | None = None  # (T, B)
    masks: dict[str, Tensor] = field(default_factory=dict)  # intervention, demo, teacher_* (T, B)
    advantages: Tensor | None = None  # (T, B) set by sources that estimate them (group-relative), else GAE

    @property
    def done(self) -> Tensor:
        return self.terminated | self.truncated

    @property
    def num_steps(self) -> int:
        return int(self.actions.shape[0])

    @property
    def num_envs(self) -> int:
        return int(self.actions.shape[1])

    def to(self, device: torch.device | str) -> Rollout:
        def move(v):
            if isinstance(v, Tensor):
                return v.to(device)
            if isinstance(v, dict):
                return {k: move(x) for k, x in v.items()}
            return v

        return replace(self, **{f.name: move(getattr(self, f.name)) for f in fields(self)})


@dataclass
class EpisodeStats:
    """One finished episode, reported by an env adapter when it auto-resets."""

    ret: float
    length: int
    success: bool | None = None
    env_index: int = -1  # which of the B envs it ran in


class BatchedEnv(Protocol):
    """What an experience collector needs from a simulator; ``envs`` implements it.

    reset(seed)            -> obs (B, ...)
    step(actions (B,H,A))  -> StepResult
    Auto-reset happens inside ``step``: the returned obs is the first obs of the next
    episode for envs that finished; ``final_obs`` holds the last obs of the finished one.
    """

    num_envs: int
    state_dim: int
    action_dim: int
    chunk: int           # H, actions per predicted chunk
    execute: int         # n <= H, env steps a chunk runs (its first n actions)
    action_low: Tensor   # (A,)
    action_high: Tensor  # (A,)

    def reset(self, seed: int | list[int] | None = None) -> Obs: ...

    def step(self, actions: Tensor) -> StepResult: ...

    def close(self) -> None: ...


@dataclass
class StepResult:
    obs: Obs                 # (B, ...) next obs, already reset where done
    reward: Tensor           # (B,) float32 (summed over the executed chunk)
    terminated: Tensor       # (B,) bool
    truncated: Tensor        # (B,) bool
    final_obs: Obs           # (B, ...) obs reached by this step (pre-reset); == obs where not done
    chunk_steps: Tensor      # (B,) int64 env steps executed
    episodes: list[EpisodeStats] = field(default_factory=list)
    info: dict = field(default_factory=dict)
