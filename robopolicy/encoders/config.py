"""Typed configs of the observation encoder (``policy.encoder`` in Hydra / config.json).

    encoder:
      hidden_sizes: [256, 256]        state MLP
      privileged: false               true: the MLP reads [observation.state, observation.privileged]
      image:    {cameras: [front, wrist], shape: [3, 84, 84], backbone: cnn | resnet18, ...}
      language: {kind: none | transformer | embedding, ...}
      fusion:   concat | film | tokens
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

BACKBONES = ("cnn", "nature", "resnet18")
LANGUAGE_KINDS = ("none", "transformer", "embedding")
FUSIONS = ("concat", "film", "tokens")


@dataclass
class ImageEncoderConfig:
    cameras: list[str] = field(default_factory=list)
    """Camera names: observation.images.<cam> for each; [] = no image encoder."""
    shape: list[int] = field(default_factory=list)
    """(C, H, W) of every camera's images; [] = taken from the dataset (BC)."""
    backbone: str = "cnn"
    """cnn (3-layer conv net, stride 2-2-1), nature (the DQN stack, stride 4-2-1: ~4x cheaper, for on-policy
    image training on CPU) or resnet18 (torchvision, random init or ``weights``)."""
    weights: str | None = None
    """Local file (.pth / .safetensors) with a torchvision resnet18 state dict; None: random init. Nothing is
    downloaded."""
    feature_dim: int = 64
    """Per-camera feature size (spatial-softmax keypoints -> linear)."""
    num_keypoints: int = 32
    """Spatial-softmax keypoints per camera (diffusion_policy's image pooling); 2 coordinates each."""
    random_shift: int = 4
    """Pad-and-random-crop by up to this many pixels while training (DrQ); 0 disables it."""
    shared_backbone: bool = True
    """One backbone for all cameras (LeRobot's default) instead of one per camera."""

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"encoder.image.backbone: unknown {self.backbone!r}; expected one of {BACKBONES}")
        if self.shape and len(self.shape) != 3:
            raise ValueError(f"encoder.image.shape: expected (C, H, W), got {self.shape}")
        if self.random_shift < 0 or self.feature_dim < 1 or self.num_keypoints < 1:
            raise ValueError(f"encoder.image: random_shift >= 0, feature_dim >= 1 and num_keypoints >= 1, got "
                             f"{self.random_shift}, {self.feature_dim}, {self.num_keypoints}")


@dataclass
class LanguageEncoderConfig:
    kind: str = "none"
    """none, transformer (byte-level tokens -> small transformer) or embedding (one learned vector per task)."""
    dim: int = 64
    """Width of the token embeddings / task embedding."""
    max_length: int = 64
    """Bytes per instruction for the transformer; longer instructions are truncated."""
    layers: int = 2
    """Transformer layers."""
    heads: int = 4
    """Attention heads (dim must be divisible by it)."""
    tasks: list[str] = field(default_factory=list)
    """Vocabulary of the embedding kind, in index order; [] = the dataset's tasks (BC)."""

    def __post_init__(self) -> None:
        if self.kind not in LANGUAGE_KINDS:
            raise ValueError(f"encoder.language.kind: unknown {self.kind!r}; expected one of {LANGUAGE_KINDS}")
        if self.kind == "transformer" and self.dim % self.heads:
            raise ValueError(f"encoder.language: dim={self.dim} must be divisible by heads={self.heads}")


@dataclass
class EncoderConfig:
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    """Widths of the MLP over observation.state; [] passes the state through."""
    activation: str = "relu"
    """One of relu, tanh, elu, gelu."""
    privileged: bool = False
    """Also read observation.privileged (simulation-only state: object poses, physics parameters), concatenated
    to observation.state before the state MLP: for teachers that a camera student is distilled from."""
    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    """Camera encoder (off while image.cameras is empty)."""
    language: LanguageEncoderConfig = field(default_factory=LanguageEncoderConfig)
    """Instruction encoder for the ``task`` key (off for kind none)."""
    fusion: str = "concat"
    """concat (features side by side), film (language scales/shifts image maps and state features) or tokens
    (one transformer over state, camera and instruction tokens; its CLS output is the feature)."""
    token_dim: int = 128
    """Width of the fusion transformer (fusion=tokens)."""
    token_layers: int = 2
    """Layers of the fusion transformer (fusion=tokens)."""
    estimate_privileged: list[int] = field(default_factory=list)
    """Indices into observation.privileged that the cameras estimate (a camera student of a privileged teacher):
    an estimator reads the camera features and observation.state and predicts these entries (normalized); the
    state MLP then reads [observation.state, privileged] with the estimates in those slots and 0 (the normalized
    mean) elsewhere, the teacher's input layout, so the student can start from the teacher's weights. The cameras
    reach the head only through the estimate. Where observation.privileged is observed (simulation), the
    ``estimate`` loss term regresses the estimates onto it; acting never needs it. [] = off."""
    estimator_hidden: list[int] = field(default_factory=lambda: [256])
    """Hidden widths of the estimator MLP (estimate_privileged)."""
    estimator_skip: bool = False
    """A linear path from observation.state to the estimates, added to the estimator MLP's output (zero at
    init): where the truth is nearly linear in the proprioception (a grasped cube sits where the gripper is),
    the MLP only learns the residual."""

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"encoder.fusion: unknown {self.fusion!r}; expected one of {FUSIONS}")
        # Hydra / JSON hand nested sections over as dicts (or DictConfig); build the dataclasses.
        if not isinstance(self.image, ImageEncoderConfig):
            self.image = _build(ImageEncoderConfig, self.image, "encoder.image")
        if not isinstance(self.language, LanguageEncoderConfig):
            self.language = _build(LanguageEncoderConfig, self.language, "encoder.language")
        if self.estimate_privileged:
            if not self.image.cameras or self.privileged or self.fusion != "concat":
                raise ValueError("encoder.estimate_privileged: needs image.cameras, privileged=false and "
                                 f"fusion=concat (got cameras {self.image.cameras}, privileged={self.privileged}, "
                                 f"fusion={self.fusion})")
            if min(self.estimate_privileged) < 0 or len(set(self.estimate_privileged)) != len(self.estimate_privileged):
                raise ValueError(f"encoder.estimate_privileged: distinct indices >= 0, got {self.estimate_privileged}")
        if self.fusion == "film" and self.language.kind == "none":
            raise ValueError("encoder.fusion=film: FiLM is conditioned on the instruction; set encoder.language.kind")

    def obs_keys(self) -> list[str]:
        """Observation keys this encoder reads besides observation.state."""
        keys = ["observation.privileged"] if self.privileged else []  # estimate_privileged: only for its loss
        keys += [f"observation.images.{cam}" for cam in self.image.cameras]
        return keys + (["task"] if self.language.kind != "none" else [])

    @classmethod
    def from_dict(cls, data: dict[str, Any] | EncoderConfig) -> EncoderConfig:
        return data if isinstance(data, EncoderConfig) else _build(cls, data, "encoder")


def _build(cls: type, data: Any, where: str) -> Any:
    data = dict(data)
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    return cls(**data)
