"""A LeRobot ``Robot`` (real hardware) as the env of the robot client: ``robopolicy fleet robot backend=lerobot``.

    robopolicy fleet robot backend=lerobot robot_id=arm-0 ... control_hz=30 max_episode_steps=600 \\
        lerobot_robot.type=so101_follower lerobot_robot.port=/dev/ttyACM0 lerobot_robot.id=arm0 \\
        lerobot_cameras=[wrist] lerobot_image_size=84

Mapping (LeRobot's dicts <-> our arrays, in the order of the robot's feature dicts):

    observation.state (D,)             the robot's scalar observation features, e.g. ``shoulder_pan.pos`` ...
    observation.images.<cam> (3, S, S) uint8, only for the requested cameras (``cameras=``): the robot's (H, W, 3)
                                       RGB frame, channel-first, resized to S = ``image_size`` (INTER_AREA)
    action (A,)                        the robot's ``action_features``: action[i] is sent as {name_i: float(action[i])}

Without requested cameras the observation is the state array alone (a Box); with cameras it is a Dict of the keys
above, the layout of the simulated envs with cameras, so the robot client registers and streams both alike (its
RobotSpec advertises each camera at S x S). A real robot has no reward, success or reset: reward is 0, an episode
ends after ``max_episode_steps`` (or when stopped) and ``reset`` leaves the arm where it is (put it back by hand or
by a scripted move before the next episode). The action is not clipped here: the robot class applies its own safety
limits (e.g. ``max_relative_target``), and the action it reports back from ``send_action`` is what is recorded.
"""

from __future__ import annotations

import importlib
import logging
from collections import OrderedDict
from typing import Any

import cv2
import gymnasium as gym
import numpy as np

from robopolicy.types import OBS_IMAGES, OBS_STATE

log = logging.getLogger(__name__)


class LeRobotBackendError(ValueError):
    """A LeRobot robot config or observation that cannot be mapped; the message names the key."""


def make_lerobot_robot(spec: dict[str, Any], imports: list[str] = ()):
    """A LeRobot ``Robot`` from ``{"type": <registered name>, <config fields>...}``. ``imports``: modules to import
    first so third-party robot classes register (LeRobot's ``lerobot_robot_*`` plugins are registered too)."""
    import draccus
    from lerobot.robots import RobotConfig, make_robot_from_config
    from lerobot.utils.import_utils import register_third_party_plugins

    register_third_party_plugins()
    for module in imports:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise LeRobotBackendError(f"lerobot_imports: cannot import {module!r}: {err}") from err
    spec = dict(spec)
    kind = spec.pop("type", None)
    if not kind:
        raise LeRobotBackendError("lerobot_robot.type: required with backend=lerobot, e.g. so101_follower")
    try:
        config_cls = RobotConfig.get_choice_class(kind)
    except (KeyError, ValueError) as err:
        known = sorted(RobotConfig.get_known_choices())
        raise LeRobotBackendError(f"lerobot_robot.type: {kind!r} is not a registered LeRobot robot; known: {known}") \
            from err
    try:  # draccus decodes as LeRobot's own CLI does (str -> Path, nested camera configs)
        config = draccus.decode(config_cls, spec)
    except Exception as err:  # draccus raises its own DecodingError / TypeError subclasses
        raise LeRobotBackendError(f"lerobot_robot: {err} (fields of {config_cls.__name__})") from err
    try:
        return make_robot_from_config(config)
    except ValueError as err:
        raise LeRobotBackendError(f"lerobot_robot: {err}") from err


def state_keys(observation_features: dict[str, Any]) -> list[str]:
    """The scalar observation features (cameras, whose value is a shape tuple, are not state)."""
    return [k for k, v in observation_features.items() if not isinstance(v, tuple)]


def camera_keys(observation_features: dict[str, Any]) -> list[str]:
    """The camera features: LeRobot gives each camera as an (H, W, 3) shape tuple."""
    return [k for k, v in observation_features.items() if isinstance(v, tuple) and len(v) == 3 and v[2] == 3]


def select_cameras(observation_features: dict[str, Any], cameras: list[str] | str | None) -> list[str]:
    """The requested camera features: None / [] none, ``"all"`` (or ``["all"]``) every camera, else these names."""
    available = camera_keys(observation_features)
    if not cameras:
        return []
    if cameras == "all" or list(cameras) == ["all"]:
        return available
    unknown = [c for c in cameras if c not in available]
    if unknown:
        raise LeRobotBackendError(f"lerobot_cameras: {unknown} not among the robot's cameras {available}")
    if len(set(cameras)) != len(cameras):
        raise LeRobotBackendError(f"lerobot_cameras: duplicate names in {list(cameras)}")
    return list(cameras)


class LeRobotEnv(gym.Env):
    """gymnasium-style wrapper of a connected LeRobot ``Robot`` for ``RobotLoop``."""

    def __init__(self, robot, max_episode_steps: int, fps: int = 30, cameras: list[str] | str | None = None,
                 image_size: int = 84):
        self.robot, self.max_episode_steps, self.image_size = robot, max_episode_steps, int(image_size)
        self.metadata = {"render_fps": fps}
        self.obs_keys = state_keys(robot.observation_features)
        self.cameras = select_cameras(robot.observation_features, cameras)
        if self.cameras and self.image_size < 1:
            raise LeRobotBackendError(f"lerobot_image_size: {image_size}, expected >= 1")
        self.action_keys = list(robot.action_features)
        if not self.obs_keys:
            raise LeRobotBackendError(f"lerobot_robot: {robot.name} has no scalar observation features; got "
                                      f"{sorted(robot.observation_features)}")
        if not self.action_keys:
            raise LeRobotBackendError(f"lerobot_robot: {robot.name} has no action features")
        state_space = gym.spaces.Box(-np.inf, np.inf, (len(self.obs_keys),), np.float32)
        self.observation_space = state_space
        if self.cameras:
            image_space = gym.spaces.Box(0, 255, (3, self.image_size, self.image_size), np.uint8)
            # an OrderedDict keeps the robot's camera order (gymnasium sorts a plain dict): the spec's order
            self.observation_space = gym.spaces.Dict(OrderedDict(
                [(OBS_STATE, state_space), *((f"{OBS_IMAGES}.{c}", image_space) for c in self.cameras)]))
        self.action_space = gym.spaces.Box(-np.inf, np.inf, (len(self.action_keys),), np.float32)
        self.embodiment = f"lerobot:{robot.name}"
        self._steps = 0

    def _observe(self) -> np.ndarray | dict[str, np.ndarray]:
        obs = self.robot.get_observation()
        missing = [k for k in self.obs_keys + self.cameras if k not in obs]
        if missing:
            raise LeRobotBackendError(f"{self.embodiment}: get_observation() lacks {missing} of its "
                                      f"observation_features")
        state = np.asarray([float(obs[k]) for k in self.obs_keys], np.float32)
        bad = np.flatnonzero(~np.isfinite(state))
        if len(bad):
            raise LeRobotBackendError(f"{self.embodiment}: observation {self.obs_keys[bad[0]]} is not finite "
                                      f"({state[bad[0]]})")
        if not self.cameras:
            return state
        return {OBS_STATE: state, **{f"{OBS_IMAGES}.{c}": self._image(c, obs[c]) for c in self.cameras}}

    def _image(self, cam: str, frame: Any) -> np.ndarray:
        """(H, W, 3) uint8 RGB from the camera -> (3, S, S) uint8, the layout of observation.images.<cam>."""
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
            raise LeRobotBackendError(f"{self.embodiment}: camera {cam!r} ({OBS_IMAGES}.{cam}) gave {got}, "
                                      f"expected an (H, W, 3) uint8 RGB frame")
        if frame.shape[:2] != (self.image_size, self.image_size):
            # INTER_AREA averages the source pixels under each target pixel: no aliasing when shrinking
            frame = cv2.resize(frame, (self.image_size, self.image_size), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(frame.transpose(2, 0, 1))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._steps = 0
        return self._observe(), {}

    def step(self, action: np.ndarray):
        action = np.asarray(action, np.float64).reshape(-1)
        if action.shape[0] != len(self.action_keys):
            raise LeRobotBackendError(f"{self.embodiment}: action has {action.shape[0]} values, the robot takes "
                                      f"{len(self.action_keys)} ({self.action_keys})")
        sent = self.robot.send_action({k: float(a) for k, a in zip(self.action_keys, action)}) or {}
        # what the robot applied after its own safety limits: RobotLoop records this as the step's action
        executed = np.asarray([float(sent.get(k, a)) for k, a in zip(self.action_keys, action)], np.float32)
        self._steps += 1
        truncated = self._steps >= self.max_episode_steps
        return self._observe(), 0.0, False, truncated, {"success": False, "action_executed": executed}

    def close(self) -> None:
        if self.robot.is_connected:
            self.robot.disconnect()
