"""Policy = ObsNormalizer + ObsEncoder + ActionHead, saved as a directory.

    obs dict (B, ...) --normalize--> --encode--> feat (B, F) --head--> chunk (B, H, A) in [-1, 1]
                                                                 --scale--> env units

A saved policy is ``config.json`` + ``model.safetensors`` (normalizer stats included), loaded
back with ``Policy.from_pretrained(path)``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from robopolicy.encoders import EncoderConfig, build_encoder
from robopolicy.fastcall import call
from robopolicy.heads import ActionHead, build_head
from robopolicy.interop.lerobot import is_lerobot_checkpoint, load_lerobot_policy
from robopolicy.normalizer import ObsNormalizer
from robopolicy.types import OBS_PRIVILEGED, OBS_STATE, ActionSample, Obs

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
FORMAT_VERSION = 1


@dataclass
class PolicyConfig:
    head: str = "gaussian"
    """Registered head name (robopolicy.heads.HEADS)."""
    head_options: dict[str, Any] = field(default_factory=dict)
    """Fields of the head's config dataclass, e.g. log_std_init for gaussian."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """Observation encoder: state MLP, cameras, instruction and their fusion (robopolicy.encoders)."""
    normalize_obs: bool = True
    """Keep running mean/std of observation.state inside the policy."""
    state_dim: int = 0
    """D; filled from the env when the policy is built."""
    privileged_dim: int = 0
    """P of observation.privileged; filled from the env when ``encoder.privileged`` or
    ``encoder.estimate_privileged`` (0 otherwise)."""
    action_dim: int = 0
    """A; filled from the env."""
    chunk: int = 1
    """H; filled from the env."""
    action_low: list[float] = field(default_factory=list)
    """Env action lower bounds (A,), for mapping [-1, 1] to env units; empty: identity."""
    action_high: list[float] = field(default_factory=list)
    """Env action upper bounds (A,)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicyConfig:
        data = dict(data)
        data.pop("format_version", None)
        allowed = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"policy config: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
        data["encoder"] = EncoderConfig.from_dict(data.get("encoder", {}))
        return cls(**data)


class ActionScaler(nn.Module):
    """Affine map between normalized actions in [-1, 1] and env units, per dimension.
    Unbounded dimensions (inf limits) pass through unchanged."""

    def __init__(self, low: list[float], high: list[float], action_dim: int):
        super().__init__()
        lo = torch.tensor(low, dtype=torch.float32) if low else torch.full((action_dim,), -float("inf"))
        hi = torch.tensor(high, dtype=torch.float32) if high else torch.full((action_dim,), float("inf"))
        bounded = torch.isfinite(lo) & torch.isfinite(hi)
        self.register_buffer("center", torch.where(bounded, (hi + lo) / 2, torch.zeros_like(lo)))
        self.register_buffer("half_range", torch.where(bounded, (hi - lo) / 2, torch.ones_like(lo)))
        self.identity = bool((self.center == 0).all() and (self.half_range == 1).all())

    def to_env(self, a: Tensor) -> Tensor:
        return a if self.identity else torch.addcmul(self.center, self.half_range, a)

    def from_env(self, a: Tensor) -> Tensor:
        return (a - self.center) / self.half_range


class Policy(nn.Module):
    def __init__(self, config: PolicyConfig):
        super().__init__()
        if config.state_dim <= 0 or config.action_dim <= 0 or config.chunk <= 0:
            raise ValueError(
                f"policy config needs positive state_dim/action_dim/chunk, got "
                f"{config.state_dim}/{config.action_dim}/{config.chunk}"
            )
        self.config = config
        dims = {OBS_STATE: config.state_dim}
        if config.encoder.privileged or config.encoder.estimate_privileged:  # estimates: normalized targets
            dims[OBS_PRIVILEGED] = config.privileged_dim
        self.normalizer = ObsNormalizer(dims, enabled=config.normalize_obs)
        self.encoder = build_encoder(config.state_dim, config.encoder, config.privileged_dim)
        self.head: ActionHead = build_head(
            config.head, self.encoder.out_dim, config.action_dim, config.chunk, dict(config.head_options)
        )
        self.scaler = ActionScaler(config.action_low, config.action_high, config.action_dim)
        if self.head.chain_frozen:
            self.encoder.requires_grad_(False)  # the frozen chain reads these features: only the steering learns

    # --- acting ---------------------------------------------------------------------------
    def features(self, obs: Obs, augment: bool = False) -> Tensor:
        """(B, F) features of a raw observation dict; ``augment``: image augmentation (imitation updates)."""
        m = self._modules  # not self.encoder: Module.__getattr__ is a slow path, and acting runs every step
        return call(m["encoder"], call(m["normalizer"], obs), augment=augment)

    def act(self, obs: Obs, deterministic: bool = False) -> ActionSample:
        """Sample a chunk; ``actions`` (B, H, A) in env units, ``trace`` and ``logp`` (B, S)."""
        m = self._modules
        sample = m["head"].sample(self.features(obs), deterministic=deterministic)
        sample.actions = m["scaler"].to_env(sample.actions)
        return sample

    def log_prob(self, obs: Obs, trace: Tensor) -> Tensor:
        """Differentiable (B, S) log-prob of stored traces."""
        return self.head.log_prob(self.features(obs), trace)

    @property
    def num_decisions(self) -> int:
        return self.head.num_decisions

    # --- persistence ----------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        cfg = asdict(self.config) | {"format_version": FORMAT_VERSION}
        (path / CONFIG_NAME).write_text(json.dumps(cfg, indent=2))
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, str(path / WEIGHTS_NAME))
        return path

    @classmethod
    def from_pretrained(
        cls, path: str | Path, device: str | torch.device = "cpu", head_overrides: dict[str, Any] | None = None
    ) -> Policy:
        """Our policy directory, or a LeRobot checkpoint (``type`` in config.json) as a LeRobotPolicy adapter.
        ``head_overrides`` replace head options that do not change weight shapes (fine-tuning knobs
        such as a diffusion head's ``ft_steps`` / ``min_std``). Overrides that add a module (``steer: true``) start
        it fresh when the checkpoint was saved without it."""
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"policy checkpoint not found: {path} (expected a directory with {CONFIG_NAME})")
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (path / name).is_file():
                raise FileNotFoundError(f"policy checkpoint {path} is missing {name}")
        raw = json.loads((path / CONFIG_NAME).read_text())
        if is_lerobot_checkpoint(raw):  # a LeRobot ACT / Diffusion directory: acts through an adapter
            return load_lerobot_policy(path, device)  # type: ignore[return-value]
        version = raw.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{path / CONFIG_NAME}: format_version {version!r}, this robopolicy reads {FORMAT_VERSION}")
        if head_overrides:
            raw["head_options"] = {**raw.get("head_options", {}), **head_overrides}
        policy = cls(PolicyConfig.from_dict(raw))
        state = load_file(str(path / WEIGHTS_NAME))
        if head_overrides and "steer" in head_overrides and not any(k.startswith("head.steering.") for k in state):
            state |= {k: v for k, v in policy.state_dict().items() if k.startswith("head.steering.")}
        try:
            load_state_checked(policy, state, path / WEIGHTS_NAME)
        except ValueError as err:
            if head_overrides:
                raise ValueError(f"head options {sorted(head_overrides)} change the saved weights' shapes: {err}") from err
            raise
        return policy.to(device)


def load_state_checked(module: nn.Module, state: dict[str, Tensor], source: Path) -> None:
    """load_state_dict with errors that name the file, key and shapes, and a NaN/Inf check."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{source}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise ValueError(f"{source}: {key} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise ValueError(f"{source}: {key} contains NaN or Inf")
    module.load_state_dict(state)


def freeze_parameters(policy: nn.Module, prefixes: list[str], key: str = "algo.freeze") -> list[nn.Parameter]:
    """Stop gradients for every parameter whose name starts with one of ``prefixes`` (e.g. a camera student's
    teacher layers: [head, encoder.net]); returns the parameters left to train. An unmatched list is an error."""
    frozen = {name for name, _ in policy.named_parameters() if name.startswith(tuple(prefixes))}
    if prefixes and not frozen:
        raise ValueError(f"{key}: no parameter name starts with any of {list(prefixes)}")
    for name, p in policy.named_parameters():
        if name in frozen:
            p.requires_grad_(False)
    return [p for p in policy.parameters() if p.requires_grad]
