"""Simulator side of robopolicy: gymnasium envs behind the ``BatchedEnv`` interface.

Importing ``envs`` registers the toy gymnasium ids ``robopolicy/ConstantReward-v0`` and
``robopolicy/TerminalReward-v0`` and the arm ids ``robopolicy/Arm-{Reach,Push,PickPlace,PegInsert}-v0``
(envs/arm.py). ``robopolicy`` never imports this package; the CLI builds envs from ``configs/env/*.yaml``
through their ``_target_``.
"""

from __future__ import annotations

from envs import arm, toy
from envs.chunk import ActionChunk
from envs.gym_vec import TorchVecEnv, make_gym_vec_env

toy.register()
arm.register()

__all__ = ["ActionChunk", "TorchVecEnv", "make_gym_vec_env"]
