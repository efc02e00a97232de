"""backend=lerobot: a LeRobot ``Robot`` (a fake arm with two fake cameras, no hardware) mapped to observation.state /
observation.images.<cam> / action and driven by `robopolicy fleet robot` as a real process against a learner."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import cv2
import gymnasium as gym
import numpy as np
import pytest
from conftest import ROOT, InProcessLearner
from fake_lerobot_robot import JOINTS, FakeArm, FakeArmConfig, fake_frame

from fleet.lerobot_robot import LeRobotBackendError, LeRobotEnv, make_lerobot_robot
from fleet.robot import batch_obs, sim_spec, split_obs
from robopolicy.encoders.config import EncoderConfig, ImageEncoderConfig
from robopolicy.policy import Policy, PolicyConfig


def _env(tmp_path, cameras=None, image_size=84, **kw) -> LeRobotEnv:
    robot = FakeArm(FakeArmConfig(id="t", calibration_dir=tmp_path, **kw))
    robot.connect()
    return LeRobotEnv(robot, max_episode_steps=3, cameras=cameras, image_size=image_size)


def test_dicts_map_to_arrays_in_feature_order(tmp_path):
    env = _env(tmp_path, max_step=0.5)
    assert env.obs_keys == list(JOINTS) and env.action_keys == list(JOINTS)
    assert env.cameras == [] and isinstance(env.observation_space, gym.spaces.Box)  # no camera requested: as before
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs, [0.0, 0.0, 0.0])
    obs, reward, terminated, truncated, info = env.step(np.array([0.2, -2.0, 1.0]))
    # elbow and gripper were limited by the robot to steps of 0.5: the state and the executed action say so
    np.testing.assert_allclose(obs, [0.2, -0.5, 0.5])
    np.testing.assert_allclose(info["action_executed"], [0.2, -0.5, 0.5])
    assert (reward, terminated, truncated) == (0.0, False, False)
    env.step(np.zeros(3))
    assert env.step(np.zeros(3))[3] is True  # max_episode_steps=3


def test_bad_robot_inputs_name_the_key(tmp_path):
    with pytest.raises(LeRobotBackendError, match=r"lacks \['elbow.pos'\]"):
        _env(tmp_path, fail_observation=True).reset()
    with pytest.raises(LeRobotBackendError, match="action has 2 values, the robot takes 3"):
        _env(tmp_path).step(np.zeros(2))
    with pytest.raises(LeRobotBackendError, match="lerobot_robot.type: 'no_such_arm' is not a registered"):
        make_lerobot_robot({"type": "no_such_arm"})
    with pytest.raises(LeRobotBackendError, match="lerobot_robot: .*max_stepp"):
        make_lerobot_robot({"type": "fake_arm", "max_stepp": 1.0})


def test_cameras_give_channel_first_frames_at_image_size(tmp_path):
    env = _env(tmp_path, cameras="all", image_size=32)
    assert env.cameras == ["wrist", "top"]  # in feature order
    space = env.observation_space
    assert isinstance(space, gym.spaces.Dict)
    assert set(space.spaces) == {"observation.state", "observation.images.wrist", "observation.images.top"}
    for cam in ("wrist", "top"):
        sub = space[f"observation.images.{cam}"]
        assert (sub.shape, sub.dtype, int(sub.low.min()), int(sub.high.max())) == ((3, 32, 32), np.uint8, 0, 255)
    obs, _ = env.reset()
    assert space.contains(obs)
    np.testing.assert_array_equal(obs["observation.state"], [0.0, 0.0, 0.0])
    obs = env.step(np.array([0.2, 0.0, 0.0]))[0]
    np.testing.assert_allclose(obs["observation.state"], [0.2, 0.0, 0.0])
    wrist, top = obs["observation.images.wrist"], obs["observation.images.top"]
    assert wrist.shape == top.shape == (3, 32, 32) and wrist.dtype == top.dtype == np.uint8
    # top is already 32x32: passed through, only transposed to channel-first (frame 1: reset took frame 0)
    np.testing.assert_array_equal(top, fake_frame(32, 32, 1).transpose(2, 0, 1))
    # wrist (48, 64) -> (32, 32) by area averaging, then channel-first
    want = cv2.resize(fake_frame(48, 64, 1), (32, 32), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
    np.testing.assert_array_equal(wrist, want)
    # orientation: red grows down the rows (axis 1) and is constant along a row, green the other way, blue = 8 n;
    # a swapped H/W or an RGB/BGR mix-up breaks these
    red, green, blue = wrist.astype(int)
    assert (np.diff(red[:, 0]) > 0).all() and (np.ptp(red, axis=1) == 0).all()
    assert (np.diff(green[0]) > 0).all() and (np.ptp(green, axis=0) == 0).all()
    assert (blue == 8).all()
    assert red[-1, 0] > 230 and green[0, -1] > 230 and red[0, 0] < 10  # the full range, not a crop


def test_camera_obs_register_and_split_for_the_wire(tmp_path):
    env = _env(tmp_path, cameras=["wrist"], image_size=24)
    spec = sim_spec("robot-0", env, "task", trace_dim=0, fps=30)
    assert (spec.embodiment, spec.state_dim, spec.action_dim) == ("lerobot:fake_arm", 3, 3)
    assert [(c.name, c.height, c.width, c.encoding) for c in spec.cameras] == [("wrist", 24, 24, "jpeg")]
    obs, _ = env.reset()
    state, images = split_obs(obs)  # what the robot records: frames HWC, as encoded and stored
    np.testing.assert_array_equal(images["wrist"], obs["observation.images.wrist"].transpose(1, 2, 0))
    np.testing.assert_array_equal(state, obs["observation.state"])
    policy_obs = batch_obs(obs)  # what the policy gets: B=1, images still uint8 (3, S, S)
    assert policy_obs["observation.images.wrist"].shape == (1, 3, 24, 24)
    assert str(policy_obs["observation.images.wrist"].dtype) == "torch.uint8"


def test_bad_camera_requests_and_frames_name_the_key(tmp_path):
    with pytest.raises(LeRobotBackendError, match=r"lerobot_cameras: \['front'\] not among the robot's cameras "
                                                  r"\['wrist', 'top'\]"):
        _env(tmp_path, cameras=["wrist", "front"])
    with pytest.raises(LeRobotBackendError, match=r"\['elbow.pos'\] not among"):  # a scalar feature is no camera
        _env(tmp_path, cameras=["elbow.pos"])
    with pytest.raises(LeRobotBackendError, match=r"camera 'wrist' \(observation.images.wrist\) gave float32 "
                                                  r"\(48, 64, 3\), expected an \(H, W, 3\) uint8"):
        _env(tmp_path, cameras=["wrist"], frame_dtype="float32").reset()


@pytest.fixture
def unsharded_learner(tmp_path, certs):
    """A learner that keeps raw chunks in its index for the whole test: the test reads them back, and a shard
    written meanwhile (the default fixture shards after 0.5 s) would have dropped them."""
    srv = InProcessLearner(tmp_path / "store", certs, shard_seconds=3600.0)
    yield srv
    srv.close()


def test_robot_process_streams_what_the_lerobot_robot_did(tmp_path, certs, unsharded_learner):
    learner = unsharded_learner
    # a policy that reads the wrist camera: the robot must stream it and feed it to the policy
    image = ImageEncoderConfig(cameras=["wrist"], shape=[3, 32, 32], feature_dim=8, num_keypoints=4)
    Policy(PolicyConfig(state_dim=3, action_dim=3, chunk=1, encoder=EncoderConfig(image=image))).save_pretrained(
        tmp_path / "init")
    from robopolicy.checkpoint import load_policy

    learner.publisher.publish(load_policy(tmp_path / "init"))
    log = tmp_path / "arm.jsonl"
    cmd = [sys.executable, "-m", "robopolicy", "fleet", "robot", "robot_id=robot-0", f"learner={learner.address}",
           f"ca={certs['ca']}", f"token_file={certs['tokens']}", f"spool={tmp_path / 'spool'}", "backend=lerobot",
           "episodes=2", "max_episode_steps=15", "chunk_steps=10", "+lerobot_robot.type=fake_arm",
           "+lerobot_robot.max_step=0.3", f"+lerobot_robot.log_path={log}",
           f"+lerobot_robot.calibration_dir={tmp_path / 'calib'}", "lerobot_imports=[fake_lerobot_robot]",
           "lerobot_cameras=[all]", "lerobot_image_size=32"]
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "fleet")])}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["spooled"] == 0
    assert log.with_suffix(".disconnected").is_file()
    steps = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(steps) == 30
    db = sqlite3.connect(learner.store.root / "index.sqlite")
    ids = [r[0] for r in db.execute("SELECT episode_id FROM episodes ORDER BY completed_at")]
    eps = [learner.store.load_episode("robot-0", i, db) for i in ids]
    db.close()
    assert [e.piece.num_steps for e in eps] == [15, 15]
    spec = learner.store.spec("robot-0")
    assert (spec.embodiment, spec.state_dim, spec.action_dim) == ("lerobot:fake_arm", 3, 3)
    action = np.concatenate([e.piece.action for e in eps])
    applied = np.array([[s["applied"][k] for k in JOINTS] for s in steps], np.float32)
    sent = np.array([[s["sent"][k] for k in JOINTS] for s in steps], np.float32)
    np.testing.assert_allclose(action, applied, atol=1e-6)  # the executed action, after the robot's limit
    assert np.abs(sent - applied).max() > 1e-3  # the random policy did ask for more than the limit
    # within an episode the next state is the position the arm reached (reset leaves the arm where it is)
    np.testing.assert_allclose(eps[0].piece.state[1:], applied[:14], atol=1e-6)
    np.testing.assert_allclose(eps[1].piece.state[0], applied[14], atol=1e-6)
    # the stored frames are the camera's, in order: get_observation call n gave frame n; each episode records its
    # reset frame and the frames before its last step (frame 15, after episode 0's last step, is not a state)
    assert [(c.name, c.height, c.width, c.encoding) for c in spec.cameras] == [("wrist", 32, 32, "jpeg"),
                                                                              ("top", 32, 32, "jpeg")]
    for ep, first in zip(eps, (0, 16)):
        for cam, (h, w) in (("wrist", (48, 64)), ("top", (32, 32))):
            stored = ep.piece.images[cam]
            assert stored.shape == (15, 32, 32, 3) and stored.dtype == np.uint8
            want = np.stack([cv2.resize(fake_frame(h, w, n), (32, 32), interpolation=cv2.INTER_AREA)
                             for n in range(first, first + 15)])
            err = np.abs(stored.astype(int) - want).max()
            assert err <= 8, f"{cam}: JPEG (quality 90) error {err} on smooth gradients"  # frame n-1 is 8 away
            np.testing.assert_array_equal(np.rint(stored[..., 2].mean(axis=(1, 2)) / 8), np.arange(first, first + 15))
