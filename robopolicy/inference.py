"""Chunk execution at inference: turn a chunk policy (B, H, A) into a per-step controller.

The env-side ``ActionChunk`` runs a whole chunk open-loop (execution ``chunk``). The two options here
query the policy more often and drive an env built with chunk = 1:

    receding:  execute the first n = n_action_steps actions of a chunk, then predict a new one
               (diffusion_policy / LeRobot ``n_action_steps``)
    ensemble:  predict a chunk every step; the action for step t averages every prediction made for t
               (ACT temporal ensembling, Zhao et al. 2023):
                   a_t = sum_i w_i a_t^(i) / sum_i w_i,    w_i = exp(-m i),   i = 0 the OLDEST prediction
               computed online: each slot h of the running window keeps sum w a, sum w and the count of
               predictions so far, which is the age index i the next prediction for that step receives.

Timing for H = 3 (ensemble):  step t uses chunk_t[0], chunk_{t-1}[1], chunk_{t-2}[2].
Per-env state is cleared where an episode ended (``done``), so no prediction crosses a reset.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from robopolicy.types import ActionSample, Obs

EXECUTIONS = ("chunk", "receding", "ensemble")


class TemporalEnsembler:
    """Online ACT temporal ensembling over chunks (B, H, A) -> actions (B, A)."""

    def __init__(self, coeff: float = 0.01):
        self.coeff = float(coeff)
        self.acc: Tensor | None = None  # (B, H, A) sum_i w_i a^(i) for steps t .. t+H-1
        self.wsum: Tensor | None = None  # (B, H, 1) sum_i w_i
        self.count: Tensor | None = None  # (B, H, 1) predictions so far for each step

    def reset(self, mask: Tensor | None = None) -> None:
        """Forget everything, or only the envs where ``mask`` (B,) is True."""
        if mask is None or self.acc is None:
            self.acc = self.wsum = self.count = None
            return
        keep = (~mask.to(self.acc.device)).view(-1, 1, 1).to(self.acc.dtype)
        self.acc, self.wsum, self.count = self.acc * keep, self.wsum * keep, self.count * keep

    def update(self, chunk: Tensor) -> Tensor:
        """Add this step's chunk (B, H, A) and return the action (B, A) for the current step."""
        if self.acc is None or self.acc.shape != chunk.shape:
            self.acc = torch.zeros_like(chunk)
            self.wsum = chunk.new_zeros(*chunk.shape[:2], 1)
            self.count = chunk.new_zeros(*chunk.shape[:2], 1)
        w = torch.exp(-self.coeff * self.count)  # the new prediction is the count-th (0-based) for each step
        self.acc = self.acc + w * chunk
        self.wsum = self.wsum + w
        self.count = self.count + 1
        action = self.acc[:, 0] / self.wsum[:, 0]
        # Slide the window one step: slot h+1 becomes slot h; the new last slot has no prediction yet.
        self.acc = torch.cat([self.acc[:, 1:], torch.zeros_like(self.acc[:, :1])], dim=1)
        self.wsum = torch.cat([self.wsum[:, 1:], torch.zeros_like(self.wsum[:, :1])], dim=1)
        self.count = torch.cat([self.count[:, 1:], torch.zeros_like(self.count[:, :1])], dim=1)
        return action


class ChunkExecutor:
    """Wraps anything with ``act(obs, deterministic) -> ActionSample`` (B, H, A) into a one-step controller.

    ``act`` returns an ActionSample whose actions are (B, 1, A); call ``reset(done)`` after each env step.
    """

    def __init__(self, policy: Any, execution: str = "ensemble", n_action_steps: int | None = None,
                 ensemble_coeff: float = 0.01):
        if execution not in ("receding", "ensemble"):
            raise ValueError(f"execution: {execution!r} is not a per-step mode; expected receding or ensemble "
                             "(chunk runs whole chunks in the env)")
        chunk = int(policy.config.chunk) if hasattr(policy, "config") and hasattr(policy.config, "chunk") else None
        n = n_action_steps if n_action_steps is not None else chunk
        if execution == "receding" and (n is None or n < 1 or (chunk is not None and n > chunk)):
            raise ValueError(f"n_action_steps: {n_action_steps!r} must be in [1, H={chunk}]")
        if not math.isfinite(ensemble_coeff):
            raise ValueError(f"ensemble_coeff must be finite, got {ensemble_coeff}")
        self.policy, self.execution, self.n_action_steps = policy, execution, n
        self.ensembler = TemporalEnsembler(ensemble_coeff)
        self.plan: Tensor | None = None  # (B, H, A) receding: the chunk being executed
        self.pos: Tensor | None = None  # (B,) receding: index of the next action of ``plan``

    def reset(self, done: Tensor | None = None) -> None:
        """Clear the state of every env (None) or of those where ``done`` (B,) is True."""
        self.ensembler.reset(done)
        if hasattr(self.policy, "reset"):  # e.g. a LeRobot policy's observation history
            self.policy.reset(done)
        if done is None or self.pos is None:
            self.plan = self.pos = None
        else:
            self.pos = torch.where(done.to(self.pos.device), self.n_action_steps, self.pos)  # forces a re-plan

    def act(self, obs: Obs, deterministic: bool = True) -> ActionSample:
        if self.execution == "ensemble":
            sample = self.policy.act(obs, deterministic=deterministic)
            sample.actions = self.ensembler.update(sample.actions).unsqueeze(1)
            return sample
        if self.pos is None or bool((self.pos >= self.n_action_steps).any()):
            sample = self.policy.act(obs, deterministic=deterministic)
            fresh = sample.actions
            if self.pos is None:
                self.plan, self.pos = fresh.clone(), torch.zeros(fresh.shape[0], dtype=torch.long, device=fresh.device)
            else:  # only envs whose plan ran out take the new chunk; the others keep executing theirs
                need = self.pos >= self.n_action_steps
                self.plan[need] = fresh[need]
                self.pos = torch.where(need, 0, self.pos)
        else:
            sample = None
        action = self.plan[torch.arange(self.plan.shape[0], device=self.plan.device), self.pos]
        self.pos = self.pos + 1
        if sample is None:  # no inference this step: the executed action is a replay of the plan
            b = action.shape[0]
            return ActionSample(actions=action.unsqueeze(1), trace=action.unsqueeze(1), logp=action.new_zeros(b, 0))
        sample.actions = action.unsqueeze(1)
        return sample
