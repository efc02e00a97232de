"""A LeRobot ``Robot`` without hardware for the backend=lerobot tests: a 3-joint arm whose positions follow the
commanded targets, limited to steps of ``max_step`` (its safety limit), plus two cameras: ``wrist`` (48, 64, 3) and
``top`` (32, 32, 3), whose n-th frame (n counts ``get_observation`` calls from 0) is ``fake_frame(h, w, n)``.

Every command it received and every action it applied is appended to ``log_path`` (one JSON line each), so a test
in another process can compare them with what reached the learner's store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lerobot.robots import Robot, RobotConfig

JOINTS = ("shoulder.pos", "elbow.pos", "gripper.pos")
CAMERAS = {"wrist": (48, 64, 3), "top": (32, 32, 3)}


def fake_frame(h: int, w: int, n: int) -> np.ndarray:
    """(h, w, 3) uint8 RGB: red grows down the rows, green along the columns, blue = 8 n (the frame's number, read
    back from a stored frame even after JPEG). A swapped H/W or channel order shows in any of the three."""
    rows, cols = np.mgrid[0:h, 0:w]
    return np.stack([rows * 240 // max(h - 1, 1), cols * 240 // max(w - 1, 1), np.full((h, w), 8 * n % 256)],
                    axis=-1).astype(np.uint8)


@RobotConfig.register_subclass("fake_arm")
@dataclass
class FakeArmConfig(RobotConfig):
    max_step: float = 0.5
    log_path: str | None = None
    fail_observation: bool = False  # get_observation() drops a joint: the backend must name it
    frame_dtype: str = "uint8"  # float32: a camera that breaks LeRobot's uint8 contract, the backend must refuse it


class FakeArm(Robot):
    config_class = FakeArmConfig
    name = "fake_arm"

    def __init__(self, config: FakeArmConfig):
        super().__init__(config)
        self.config = config
        self.pos = {k: 0.0 for k in JOINTS}
        self.connected = False
        self.frames = 0

    @property
    def observation_features(self) -> dict:
        return {**{k: float for k in JOINTS}, **CAMERAS}

    @property
    def action_features(self) -> dict:
        return {k: float for k in JOINTS}

    @property
    def is_connected(self) -> bool:
        return self.connected

    def connect(self, calibrate: bool = True) -> None:
        self.connected = True

    @property
    def is_calibrated(self) -> bool:
        return True

    def calibrate(self) -> None:
        pass

    def configure(self) -> None:
        pass

    def get_observation(self) -> dict:
        if not self.connected:
            raise ConnectionError("fake_arm: not connected")
        obs = dict(self.pos)
        if self.config.fail_observation:
            obs.pop("elbow.pos")
        images = {c: fake_frame(h, w, self.frames).astype(self.config.frame_dtype) for c, (h, w, _) in CAMERAS.items()}
        self.frames += 1
        return obs | images

    def send_action(self, action: dict) -> dict:
        if not self.connected:
            raise ConnectionError("fake_arm: not connected")
        applied = {}
        for k in JOINTS:
            step = max(-self.config.max_step, min(self.config.max_step, action[k] - self.pos[k]))
            applied[k] = self.pos[k] + step
        self.pos = applied
        if self.config.log_path:
            with open(self.config.log_path, "a") as f:
                f.write(json.dumps({"sent": {k: action[k] for k in JOINTS}, "applied": applied}) + "\n")
        return dict(applied)

    def disconnect(self) -> None:
        self.connected = False
        if self.config.log_path:
            with open(Path(self.config.log_path).with_suffix(".disconnected"), "w") as f:
                f.write("1")
