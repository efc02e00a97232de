"""A LeRobot policy checkpoint directory (ACT or Diffusion) acting in our envs.

    Policy.from_pretrained(dir)   config.json carries LeRobot's ``type`` -> LeRobotPolicy here
    LeRobotPolicy.act(obs)        our obs dict (B, ...) -> LeRobot batch -> preprocessor (normalize, device)
                                  -> predict_action_chunk (B, n, A) -> postprocessor (unnormalize)
                                  -> ActionSample(actions (B, H, A) in env units, the first H of n)

Observation mapping (errors name the key and both shapes):
    observation.state, observation.images.<cam>, task    passed under the same key
    LeRobot wants observation.state (d1) + observation.environment_state (d2) and we have one state of
    d1 + d2 values: split in that order (how a Meta-World state is laid out: robot, then objects / goal);
    LeRobot wants only observation.environment_state (d) and our state has d values: passed as it.
Diffusion's ``n_obs_steps`` history is the last n observations this policy was queried with, the first one
repeated after a reset (as LeRobot's queues do); with chunk execution those are H env steps apart.

Nothing is downloaded: the backbone's ``pretrained_backbone_weights`` is cleared before the model is built,
since every weight comes from the checkpoint's model.safetensors anyway. LeRobot policies are not
fine-tunable by our objectives (no trace / log-prob); ``logp`` is (B, 0).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robopolicy.types import OBS_IMAGES, OBS_STATE, TASK, ActionSample, Obs

LEROBOT_TYPES = ("act", "diffusion")
OBS_ENV_STATE = "observation.environment_state"
log = logging.getLogger(__name__)


def is_lerobot_checkpoint(config: dict[str, Any]) -> bool:
    """LeRobot's config.json names its policy class in ``type``; ours never has that key."""
    return "type" in config and "format_version" not in config


@dataclass
class LeRobotPolicyInfo:
    """What our tools read from ``policy.config``: the chunk length H and dimensions."""

    type: str
    chunk: int
    action_dim: int
    n_obs_steps: int


class LeRobotPolicy(nn.Module):
    """Adapter: ``act(obs, deterministic) -> ActionSample`` with actions (B, H, A), H = n_action_steps."""

    def __init__(self, policy: nn.Module, preprocessor: Any, postprocessor: Any, chunk: int | None = None):
        super().__init__()
        cfg = policy.config
        self.lerobot_policy, self.preprocessor, self.postprocessor = policy, preprocessor, postprocessor
        self.input_features = {k: tuple(f.shape) for k, f in cfg.input_features.items()}
        action_dim = int(cfg.output_features["action"].shape[0])
        available = int(cfg.n_action_steps)
        h = available if chunk is None else int(chunk)
        if not 1 <= h <= available:
            raise ValueError(f"chunk: H={h} must be in [1, n_action_steps={available}] of the LeRobot {cfg.type} policy")
        self.config = LeRobotPolicyInfo(cfg.type, h, action_dim, int(getattr(cfg, "n_obs_steps", 1)))
        self.history: dict[str, Tensor] = {}  # key -> (B, n_obs_steps, ...)
        self.fresh: Tensor | None = None  # (B,) envs whose episode ended since the last call

    @property
    def num_decisions(self) -> int:
        return 0

    def reset(self, done: Tensor | None = None) -> None:
        """Forget the observation history of all envs (None), or of those where ``done`` (B,) is True."""
        if done is None:
            self.history, self.fresh = {}, None
        else:
            self.fresh = done if self.fresh is None else self.fresh | done

    def to_lerobot(self, obs: Obs) -> dict[str, Any]:
        """Our obs dict (B, ...) -> LeRobot's batch for one time step (B, ...), unnormalized."""
        wanted = self.input_features
        # One state of ours, [robot state, environment state] in LeRobot's: split it where LeRobot wants both.
        split = OBS_ENV_STATE in wanted and OBS_ENV_STATE not in obs and OBS_STATE in obs
        robot_dim = wanted[OBS_STATE][0] if OBS_STATE in wanted else 0
        batch: dict[str, Any] = {}
        for key, shape in wanted.items():
            if split and key == OBS_STATE:
                value = obs[OBS_STATE][:, :robot_dim]
            elif split and key == OBS_ENV_STATE:
                value = obs[OBS_STATE][:, robot_dim:]
            elif key in obs:
                value = obs[key]
            else:
                raise KeyError(f"LeRobot {self.config.type} policy needs {key!r} {shape}; observation has {sorted(obs)}")
            if key.startswith(f"{OBS_IMAGES}.") and value.dtype == torch.uint8:
                value = value.float() / 255.0  # LeRobot cameras are float in [0, 1]
            if tuple(value.shape[1:]) != shape:
                where = f" (split from {OBS_STATE} {tuple(obs[OBS_STATE].shape)})" if split and "state" in key else ""
                raise ValueError(f"{key}: shape {tuple(value.shape)}{where}, LeRobot {self.config.type} policy "
                                 f"expects (B, {', '.join(map(str, shape))})")
            batch[key] = value.float()
        b = next(iter(batch.values())).shape[0]
        batch[TASK] = list(obs[TASK]) if TASK in obs else [""] * b
        return batch

    def _with_history(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Stack the last n_obs_steps observations per key: (B, ...) -> (B, n_obs_steps, ...)."""
        n, fresh = self.config.n_obs_steps, self.fresh
        self.fresh = None
        out = dict(batch)
        for key, value in batch.items():
            if not isinstance(value, Tensor):
                continue
            repeated = value.unsqueeze(1).repeat_interleave(n, dim=1)  # a first step fills the history with itself
            past = self.history.get(key)
            if past is None or past.shape[0] != value.shape[0]:
                past = repeated
            else:
                past = torch.cat([past[:, 1:], value.unsqueeze(1)], dim=1)
                if fresh is not None:
                    past = torch.where(fresh.to(past.device).view(-1, *[1] * (past.dim() - 1)), repeated, past)
            self.history[key] = out[key] = past
        return out

    @torch.no_grad()
    def act(self, obs: Obs, deterministic: bool = True) -> ActionSample:
        """actions (B, H, A) in env units; ``deterministic`` is LeRobot's own behaviour (ACT's decoder is
        deterministic at inference, Diffusion samples its noise)."""
        batch = self.preprocessor(self.to_lerobot(obs))
        if self.config.type == "diffusion":
            batch = self._with_history(batch)
        chunk = self.lerobot_policy.predict_action_chunk(batch)  # (B, n, A), normalized
        actions = self.postprocessor(chunk)[:, : self.config.chunk].float()
        b = actions.shape[0]
        device = next(iter(v for v in obs.values() if isinstance(v, Tensor))).device
        actions = actions.to(device)
        return ActionSample(actions=actions, trace=actions, logp=actions.new_zeros(b, 0))


def load_lerobot_policy(path: str | Path, device: str | torch.device = "cpu", chunk: int | None = None) -> LeRobotPolicy:
    """Load a LeRobot ACT / Diffusion checkpoint directory (config.json, model.safetensors and, when saved,
    policy_preprocessor.json / policy_postprocessor.json with the normalization statistics)."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    path = Path(path)
    raw = json.loads((path / "config.json").read_text())
    kind = raw.get("type")
    if kind not in LEROBOT_TYPES:
        raise ValueError(f"{path / 'config.json'}: LeRobot policy type {kind!r} is not supported; "
                         f"supported: {LEROBOT_TYPES}")
    cfg = PreTrainedConfig.from_pretrained(str(path), local_files_only=True)
    cfg.device = str(device)
    if hasattr(cfg, "pretrained_backbone_weights"):
        cfg.pretrained_backbone_weights = None  # the checkpoint holds the backbone: never fetch torchvision's
    policy = get_policy_class(kind).from_pretrained(str(path), config=cfg, local_files_only=True)
    policy.eval()
    if (path / "policy_preprocessor.json").is_file():
        pre, post = make_pre_post_processors(cfg, pretrained_path=str(path))
    else:  # pre-0.4 checkpoints normalized inside the model; without a pipeline there is nothing to apply
        log.warning("%s has no policy_preprocessor.json: observations and actions are not (un)normalized", path)
        pre, post = make_pre_post_processors(cfg, dataset_stats=None)
    return LeRobotPolicy(policy, pre, post, chunk)
