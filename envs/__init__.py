"""Simulator side of robopolicy: gymnasium envs behind the ``BatchedEnv`` interface.

Importing ``envs`` registers the toy gymnasium ids ``robopolicy/ConstantReward-v0`` and
``robopolicy/TerminalReward-v0``. ``robopolicy`` never imports this package; the CLI builds envs
from ``configs/env/*.yaml`` through their ``_target_``.
"""

from __future__ import annotations

from envs import toy
from envs.chunk import ActionChunk
from envs.gym_vec import TorchVecEnv, make_gym_vec_env

toy.register()

__all__ = ["ActionChunk", "TorchVecEnv", "make_gym_vec_env"]
