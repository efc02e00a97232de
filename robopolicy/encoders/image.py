"""Camera encoders: observation.images.<cam> (B, C, H, W) -> per-camera features (B, N_cam, F_img).

    uint8 [0, 255] or float [0, 1]  --to_unit-->  float [0, 1]     (images are scaled, never running-normalized)
        --random_shift (augment=True: BC updates only)--> backbone (small CNN | ResNet-18 trunk) -> feature map (B, C', h, w)
        --FiLM (optional: gamma, beta per channel from the instruction)--> spatial softmax keypoints (B, 2K)
        --linear--> (B, F_img)
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robopolicy.encoders.config import ImageEncoderConfig
from robopolicy.types import OBS_IMAGES, Obs


def image_key(camera: str) -> str:
    return f"{OBS_IMAGES}.{camera}"


def to_unit(images: Tensor) -> Tensor:
    """uint8 images in [0, 255] -> float in [0, 1]; float images are taken to be in [0, 1] already."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


def random_shift(images: Tensor, pad: int, generator: torch.Generator | None = None) -> Tensor:
    """DrQ augmentation: replicate-pad by ``pad`` and crop back at an integer offset drawn per sample.

    images (B, C, H, W) -> (B, C, H, W); out[b, :, i, j] = padded[b, :, i + dy_b, j + dx_b], dy, dx in [0, 2 pad].
    """
    if pad == 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    dy = torch.randint(0, 2 * pad + 1, (b, 1), device=images.device, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b, 1), device=images.device, generator=generator)
    rows = (dy + torch.arange(h, device=images.device)).unsqueeze(-1)  # (B, H, 1)
    cols = (dx + torch.arange(w, device=images.device)).unsqueeze(1)  # (B, 1, W)
    batch = torch.arange(b, device=images.device).view(b, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)


class SmallCNN(nn.Module):
    """3 conv layers (stride 2, 2, 1), ReLU: (B, C, H, W) -> (B, 64, ~H/4, ~W/4)."""

    out_channels = 64

    def __init__(self, in_channels: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1, padding=1), nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class NatureCNN(nn.Module):
    """The Nature-DQN conv stack (8x8 stride 4, 4x4 stride 2, 3x3 stride 1), ReLU: (B, C, 84, 84) -> (B, 64, 7, 7).
    About 4x fewer multiply-adds than SmallCNN at 84x84: the CPU choice when images are trained on-policy."""

    out_channels = 64

    def __init__(self, in_channels: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ResNet18Trunk(nn.Module):
    """torchvision ResNet-18 without its pooling and classifier: (B, 3, H, W) -> (B, 512, H/32, W/32).

    Inputs are standardized with the ImageNet mean / std the torchvision weights were trained with.
    """

    out_channels = 512

    def __init__(self, in_channels: int, weights: str | None = None):
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None)  # never downloads; weights come from a local file below
        if weights is not None:
            load_backbone_weights(net, Path(weights))
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.net = nn.Sequential(*list(net.children())[:-2])
        mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
        if in_channels != 3:  # no ImageNet statistics for other channel counts: centre on 0.5 instead
            mean, std = [0.5] * in_channels, [0.25] * in_channels
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x - self.mean) / self.std)


def load_backbone_weights(net: nn.Module, path: Path) -> None:
    """A torchvision resnet18 state dict from ``path`` (.safetensors or a torch.save file); the classifier
    (fc.*) may be missing. Errors name the file and the keys or shapes that do not fit."""
    if not path.is_file():
        raise FileNotFoundError(f"encoder.image.weights: {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    expected = net.state_dict()
    missing = sorted(k for k in set(expected) - set(state) if not k.startswith("fc."))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"encoder.image.weights {path}: not a resnet18 state dict; missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise ValueError(f"encoder.image.weights {path}: {key} has shape {tuple(value.shape)}, "
                             f"expected {tuple(expected[key].shape)}")
    net.load_state_dict(state, strict=False)


class SpatialSoftmax(nn.Module):
    """Keypoints of a feature map (Levine et al. 2016; diffusion_policy): 1x1 conv to K maps, softmax over
    the h*w positions, expected (x, y) in [-1, 1]: (B, C, h, w) -> (B, 2K)."""

    def __init__(self, in_channels: int, num_keypoints: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, num_keypoints, 1)

    def forward(self, fmap: Tensor) -> Tensor:
        h, w = fmap.shape[-2:]
        attn = self.proj(fmap).flatten(2).softmax(-1)  # (B, K, h*w)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=fmap.device),
                                torch.linspace(-1, 1, w, device=fmap.device), indexing="ij")
        grid = torch.stack([xs.flatten(), ys.flatten()], dim=-1).to(attn.dtype)  # (h*w, 2)
        return (attn @ grid).flatten(1)  # (B, K, 2) -> (B, 2K)


def make_backbone(config: ImageEncoderConfig) -> nn.Module:
    channels = config.shape[0]
    if config.backbone == "cnn":
        return SmallCNN(channels)
    if config.backbone == "nature":
        return NatureCNN(channels)
    return ResNet18Trunk(channels, config.weights)


class ImageEncoder(nn.Module):
    """Every camera of ``config.cameras`` -> (B, N_cam, F_img). ``film`` (B, 2 C') optionally modulates the
    backbone's feature maps channel-wise: fmap * (1 + gamma) + beta (FiLM, Perez et al. 2018). ``augment``
    applies the random shift (imitation updates ask for it; acting and PPO's log-prob recomputation do not)."""

    def __init__(self, config: ImageEncoderConfig):
        super().__init__()
        if len(config.shape) != 3:
            raise ValueError(f"encoder.image.shape: expected (C, H, W) for cameras {config.cameras}, got "
                             f"{config.shape} (BC fills it from the dataset)")
        self.config, self.cameras = config, list(config.cameras)
        n_backbones = 1 if config.shared_backbone else len(self.cameras)
        self.backbones = nn.ModuleList([make_backbone(config) for _ in range(n_backbones)])
        self.channels = self.backbones[0].out_channels
        self.pools = nn.ModuleList([SpatialSoftmax(self.channels, config.num_keypoints) for _ in self.cameras])
        self.projs = nn.ModuleList([nn.Linear(2 * config.num_keypoints, config.feature_dim) for _ in self.cameras])
        self.out_dim = config.feature_dim

    def forward(self, obs: Obs, film: Tensor | None = None, augment: bool = False) -> Tensor:
        shape = tuple(self.config.shape)
        images = []
        for cam in self.cameras:
            key = image_key(cam)
            if key not in obs:
                raise KeyError(f"observation has no {key!r} (keys: {sorted(obs)}); the policy was built for "
                               f"cameras {self.cameras}")
            x = obs[key]
            if x.dim() != 4 or tuple(x.shape[1:]) != shape:
                raise ValueError(f"{key}: shape {tuple(x.shape)}, expected (B, {', '.join(map(str, shape))})")
            images.append(to_unit(x))
        # Only imitation asks for augmentation: PPO must recompute log-probs on the features the rollout saw.
        augment = augment and self.config.random_shift > 0
        feats = []
        if len(self.backbones) == 1:  # one backbone pass over all cameras stacked along the batch
            x = torch.cat(images, dim=0)
            fmaps = self.backbones[0](random_shift(x, self.config.random_shift) if augment else x)
            fmaps = fmaps.chunk(len(self.cameras), dim=0)
        else:
            fmaps = [bb(random_shift(x, self.config.random_shift) if augment else x)
                     for bb, x in zip(self.backbones, images, strict=True)]
        for i, fmap in enumerate(fmaps):
            if film is not None:
                gamma, beta = film.unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)  # (B, C', 1, 1) each
                fmap = fmap * (1 + gamma) + beta
            feats.append(self.projs[i](self.pools[i](fmap)))
        return torch.stack(feats, dim=1)
