"""ObsEncoder: state MLP + cameras + instruction, fused into one feature vector (B, F) for the head.

    concat:  F = F_state + N_cam F_img + E                  [s, img_1 .. img_N, text]
    film:    (gamma, beta) = Linear(text)  -> image maps: m (1 + gamma) + beta,  state: s (1 + gamma_s) + beta_s
             F = F_state + N_cam F_img + E                  (language also stays a feature of its own)
    tokens:  [CLS, s, img_1 .. img_N, text tokens] (+ type embeddings) -> transformer -> CLS output, F = token_dim

A state-only config (no cameras, no language) is exactly the old state MLP, with the same
parameter names (``encoder.net.*``), so checkpoints written before images existed still load.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robopolicy.encoders.config import EncoderConfig
from robopolicy.encoders.image import ImageEncoder
from robopolicy.encoders.language import make_language_encoder
from robopolicy.encoders.state import mlp
from robopolicy.fastcall import call
from robopolicy.types import OBS_PRIVILEGED, OBS_STATE, TASK, Obs


class ObsEncoder(nn.Module):
    """Normalized obs dict -> (B, F). Keys: observation.state (B, D), observation.images.<cam> (B, C, H, W)
    uint8 or float in [0, 1], task (B,) strings (or token ids)."""

    def __init__(self, state_dim: int, config: EncoderConfig, privileged_dim: int = 0):
        super().__init__()
        self.config = config
        reads_privileged = config.privileged or bool(config.estimate_privileged)
        if reads_privileged and privileged_dim <= 0:
            key = "privileged" if config.privileged else "estimate_privileged"
            raise ValueError(f"encoder.{key}: needs the policy's privileged_dim (P > 0), got "
                             f"{privileged_dim}; the env must observe observation.privileged")
        if config.estimate_privileged and max(config.estimate_privileged) >= privileged_dim:
            raise ValueError(f"encoder.estimate_privileged: indices {config.estimate_privileged} out of range for "
                             f"observation.privileged of size {privileged_dim}")
        in_dim = state_dim + (privileged_dim if reads_privileged else 0)
        self.privileged_dim = privileged_dim
        self.net = mlp(in_dim, list(config.hidden_sizes), config.activation)  # the state MLP
        self.state_dim = config.hidden_sizes[-1] if config.hidden_sizes else in_dim
        self.images = ImageEncoder(config.image) if config.image.cameras else None
        self.language = make_language_encoder(config.language)
        n_cam = len(config.image.cameras)
        text_dim = self.language.out_dim if self.language is not None else 0
        if config.fusion == "film":
            assert self.language is not None  # EncoderConfig checks it
            img_ch = self.images.channels if self.images is not None else 0
            self.film = nn.Linear(text_dim, 2 * (img_ch + self.state_dim))
            nn.init.zeros_(self.film.weight)  # start as the identity modulation
            nn.init.zeros_(self.film.bias)
        self.estimator = None
        if config.estimate_privileged:  # cameras + state -> estimated privileged entries (see EncoderConfig)
            self.estimator = mlp(n_cam * config.image.feature_dim + state_dim, list(config.estimator_hidden),
                                 config.activation, out_dim=len(config.estimate_privileged))
            self.register_buffer("estimate_index", torch.tensor(config.estimate_privileged), persistent=False)
            if config.estimator_skip:
                self.estimator_skip = nn.Linear(state_dim, len(config.estimate_privileged))
                nn.init.zeros_(self.estimator_skip.weight)  # starts as the MLP alone (a warm start is unchanged)
                nn.init.zeros_(self.estimator_skip.bias)
            self.out_dim = self.state_dim
        elif config.fusion == "tokens":
            d = config.token_dim
            self.state_token = nn.Linear(self.state_dim, d)
            self.image_token = nn.Linear(config.image.feature_dim, d) if self.images is not None else None
            self.text_token = nn.Linear(text_dim, d) if self.language is not None else None
            self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
            self.type_embed = nn.Parameter(torch.randn(3 + n_cam, d) * 0.02)  # cls, state, each camera, text
            layer = nn.TransformerEncoderLayer(d, max(1, d // 32), 4 * d, dropout=0.0, activation="gelu",
                                               batch_first=True, norm_first=True)
            self.fusion = nn.TransformerEncoder(layer, config.token_layers, enable_nested_tensor=False)
            self.out_dim = d
        else:
            self.out_dim = self.state_dim + n_cam * config.image.feature_dim + text_dim
        # State MLP only (no cameras, language, estimator, tokens, privileged input): forward is just
        # net(obs[OBS_STATE]); a shortcut past four Python frames on every acting step.
        self._state_only = (self.images is None and self.language is None and self.estimator is None
                            and config.fusion != "tokens" and not config.privileged)

    def forward(self, obs: Obs, augment: bool = False) -> Tensor:
        """``augment``: random-shift the cameras (BC updates)."""
        if self._state_only:
            return call(self._modules["net"], obs[OBS_STATE])
        return self.features_and_estimate(obs, augment)[0]

    def features_and_estimate(self, obs: Obs, augment: bool = False) -> tuple[Tensor, Tensor | None]:
        """(B, F) features and, with ``estimate_privileged``, the (B, len) normalized estimates (else None)."""
        if self.estimator is not None:
            return self._estimated_features(obs, augment)
        return self._fused_features(obs, augment), None

    def _estimated_features(self, obs: Obs, augment: bool) -> tuple[Tensor, Tensor]:
        estimate = self.estimate(obs, augment)
        return self.features_from_estimate(obs, estimate), estimate

    def estimate(self, obs: Obs, augment: bool = False) -> Tensor:
        """(B, len(estimate_privileged)) normalized estimates of the privileged entries, from cameras + state."""
        images = self.images(obs, None, augment)
        estimate = self.estimator(torch.cat([images.flatten(1), obs[OBS_STATE]], dim=-1))
        if self.config.estimator_skip:
            estimate = estimate + self.estimator_skip(obs[OBS_STATE])
        return estimate

    def features_from_estimate(self, obs: Obs, estimate: Tensor) -> Tensor:
        """The state MLP on the teacher's input layout: [observation.state, privileged] with ``estimate`` in the
        estimated slots and 0 (the normalized mean) elsewhere. Separate so a probe can hand it other values
        (benchmarks/estimator_oracle.py: the truth)."""
        privileged = estimate.new_zeros(estimate.shape[0], self.privileged_dim)
        privileged = privileged.index_copy(1, self.estimate_index, estimate)
        return self.net(torch.cat([obs[OBS_STATE], privileged], dim=-1))

    def _fused_features(self, obs: Obs, augment: bool) -> Tensor:
        state = call(self.net, self._state_input(obs))
        b = state.shape[0]
        text_tokens = text_pad = text = None
        if self.language is not None:
            if TASK not in obs:
                raise KeyError(f"observation has no {TASK!r}; the policy was built with a "
                               f"{self.config.language.kind} instruction encoder")
            text_tokens, text_pad, text = self.language(obs[TASK], b)
        img_film = None
        if self.config.fusion == "film":
            gamma_beta = self.film(text)
            img_ch = 2 * self.images.channels if self.images is not None else 0
            img_film, state_film = gamma_beta[:, :img_ch], gamma_beta[:, img_ch:]
            gamma, beta = state_film.chunk(2, dim=-1)
            state = state * (1 + gamma) + beta
        images = self.images(obs, img_film, augment) if self.images is not None else None
        if self.config.fusion != "tokens":
            parts = [state] + ([images.flatten(1)] if images is not None else []) + ([text] if text is not None else [])
            return torch.cat(parts, dim=-1) if len(parts) > 1 else state
        return self._fuse_tokens(state, images, text_tokens, text_pad)

    def _state_input(self, obs: Obs) -> Tensor:
        if not self.config.privileged:
            return obs[OBS_STATE]
        if OBS_PRIVILEGED not in obs:
            raise KeyError(f"observation has no {OBS_PRIVILEGED!r} (keys: {sorted(obs)}); the policy was built "
                           "with encoder.privileged=true (for our arm: env.kwargs.privileged=true)")
        return torch.cat([obs[OBS_STATE], obs[OBS_PRIVILEGED]], dim=-1)

    def _fuse_tokens(self, state: Tensor, images: Tensor | None, text: Tensor | None, pad: Tensor | None) -> Tensor:
        b, types = state.shape[0], self.type_embed
        tokens = [self.cls.expand(b, -1, -1) + types[0], self.state_token(state).unsqueeze(1) + types[1]]
        if images is not None:
            tokens.append(self.image_token(images) + types[2 : 2 + images.shape[1]])
        masks = [torch.zeros(b, sum(t.shape[1] for t in tokens), dtype=torch.bool, device=state.device)]
        if text is not None:
            tokens.append(self.text_token(text) + types[-1])
            masks.append(pad)
        out = self.fusion(torch.cat(tokens, dim=1), src_key_padding_mask=torch.cat(masks, dim=1))
        return out[:, 0]


def build_encoder(state_dim: int, config: EncoderConfig, privileged_dim: int = 0) -> ObsEncoder:
    return ObsEncoder(state_dim, config, privileged_dim)
