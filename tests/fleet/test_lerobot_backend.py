"""backend=lerobot: a LeRobot ``Robot`` (a fake arm, no hardware) mapped to observation.state / action and driven by
`robopolicy fleet robot` as a real process against a learner."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, InProcessLearner
from fake_lerobot_robot import JOINTS, FakeArm, FakeArmConfig

from fleet.lerobot_robot import LeRobotBackendError, LeRobotEnv, make_lerobot_robot
from robopolicy.policy import Policy, PolicyConfig


def _env(tmp_path, **kw) -> LeRobotEnv:
    robot = FakeArm(FakeArmConfig(id="t", calibration_dir=tmp_path, **kw))
    robot.connect()
    return LeRobotEnv(robot, max_episode_steps=3)


def test_dicts_map_to_arrays_in_feature_order(tmp_path):
    env = _env(tmp_path, max_step=0.5)
    assert env.obs_keys == list(JOINTS) and env.action_keys == list(JOINTS)  # the camera is left out
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


@pytest.fixture
def unsharded_learner(tmp_path, certs):
    """A learner that keeps raw chunks in its index for the whole test: the test reads them back, and a shard
    written meanwhile (the default fixture shards after 0.5 s) would have dropped them."""
    srv = InProcessLearner(tmp_path / "store", certs, shard_seconds=3600.0)
    yield srv
    srv.close()


def test_robot_process_streams_what_the_lerobot_robot_did(tmp_path, certs, unsharded_learner):
    learner = unsharded_learner
    Policy(PolicyConfig(state_dim=3, action_dim=3, chunk=1)).save_pretrained(tmp_path / "init")
    from robopolicy.checkpoint import load_policy

    learner.publisher.publish(load_policy(tmp_path / "init"))
    log = tmp_path / "arm.jsonl"
    cmd = [sys.executable, "-m", "robopolicy", "fleet", "robot", "robot_id=robot-0", f"learner={learner.address}",
           f"ca={certs['ca']}", f"token_file={certs['tokens']}", f"spool={tmp_path / 'spool'}", "backend=lerobot",
           "episodes=2", "max_episode_steps=15", "chunk_steps=10", "+lerobot_robot.type=fake_arm",
           "+lerobot_robot.max_step=0.3", f"+lerobot_robot.log_path={log}",
           f"+lerobot_robot.calibration_dir={tmp_path / 'calib'}", "lerobot_imports=[fake_lerobot_robot]"]
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
