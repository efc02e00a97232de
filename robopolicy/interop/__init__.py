"""Interop with other frameworks' formats: LeRobot policy checkpoints (``lerobot.py``)."""

from __future__ import annotations

from robopolicy.interop.lerobot import LEROBOT_TYPES, LeRobotPolicy, is_lerobot_checkpoint, load_lerobot_policy

__all__ = ["LEROBOT_TYPES", "LeRobotPolicy", "is_lerobot_checkpoint", "load_lerobot_policy"]
