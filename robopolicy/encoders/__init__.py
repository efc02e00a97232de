"""Observation encoders: normalized obs dict -> features (B, F).

    config.py     typed configs (EncoderConfig with image / language sections and the fusion mode)
    state.py      MLP over observation.state
    image.py      small CNN / ResNet-18 per camera, random shift, spatial softmax
    language.py   byte-level tokenizer + small transformer, or a learned task embedding
    fusion.py     ObsEncoder: concat, FiLM or token fusion of the above
"""

from __future__ import annotations

from robopolicy.encoders.config import EncoderConfig, ImageEncoderConfig, LanguageEncoderConfig
from robopolicy.encoders.fusion import ObsEncoder, build_encoder
from robopolicy.encoders.state import ACTIVATIONS, StateEncoder, mlp

__all__ = ["ACTIVATIONS", "EncoderConfig", "ImageEncoderConfig", "LanguageEncoderConfig", "ObsEncoder",
           "StateEncoder", "build_encoder", "mlp"]
