"""Offline data: demonstrations loaded from LeRobotDataset directories."""

from __future__ import annotations

from robopolicy.data.demos import DemoData, load_demos

__all__ = ["DemoData", "load_demos"]
