"""Our arm (envs/arm.py): rewards by hand, control modes, observations, privileged state, experts, errors."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the arm ids)
from envs.arm import ENV_IDS, FINGER_OPEN, MAX_DELTA, PRIV_DIM, STATE_DIMS, ArmEnv
from envs.arm_experts import arm_expert, expert_success
from envs.arm_tasks import TASKS, TaskState
from envs.randomization import PARAM_NAMES

ALL_TASKS = sorted(TASKS)


def _state(ee=(0.4, 0, 0.1), obj=(0.5, 0, 0.02), goal=(0.5, 0.1, 0.0), start=(0.5, 0, 0.02), grip=0.08, half=0.02):
    f = np.array
    return TaskState(f(ee, float), grip, f(obj, float), f(start, float), f(goal, float), half)


def test_reach_reward_is_minus_distance_plus_bonus():
    s = _state(ee=(0.4, 0.0, 0.1), goal=(0.43, 0.04, 0.1))  # 3-4-5 triangle: 5 cm away
    terms = {k: f(s) for k, f in TASKS["reach"].rewards.items()}
    assert terms == {"ee_to_goal": pytest.approx(-0.05), "success": 0.0}
    near = _state(ee=(0.4, 0.0, 0.1), goal=(0.41, 0.0, 0.1))
    assert TASKS["reach"].success(near) and TASKS["reach"].rewards["success"](near) == 1.0


def test_push_rewards_by_hand():
    s = _state(ee=(0.4, 0.0, 0.02), obj=(0.5, 0.0, 0.02), goal=(0.5, 0.06, 0.0))
    terms = {k: f(s) for k, f in TASKS["push"].rewards.items()}
    assert terms["ee_to_obj"] == pytest.approx(-0.05)  # 0.5 * 10 cm
    assert terms["obj_to_goal"] == pytest.approx(-0.06)  # xy only: the goal sits on the table
    assert terms["success"] == 0.0 and not TASKS["push"].success(s)
    assert TASKS["push"].success(_state(obj=(0.5, 0.03, 0.02), goal=(0.5, 0.0, 0.0)))


def test_pick_place_lift_pays_only_near_the_object():
    held = _state(ee=(0.5, 0.0, 0.07), obj=(0.5, 0.0, 0.07), start=(0.5, 0.0, 0.02))
    assert TASKS["pick_place"].rewards["lift"](held) == pytest.approx(2.0 * 0.05 / 0.1)
    tossed = _state(ee=(0.3, 0.0, 0.2), obj=(0.5, 0.0, 0.07), start=(0.5, 0.0, 0.02))
    assert TASKS["pick_place"].rewards["lift"](tossed) == 0.0


def test_peg_insert_success_needs_depth_and_centring():
    ok = _state(obj=(0.5, 0.1, 0.045 + 0.02), goal=(0.505, 0.1, 0.0), half=0.045)  # bottom 2 cm above hole bottom
    assert TASKS["peg_insert"].success(ok)
    shallow = _state(obj=(0.5, 0.1, 0.045 + 0.04), goal=(0.5, 0.1, 0.0), half=0.045)
    off_centre = _state(obj=(0.5, 0.13, 0.045 + 0.02), goal=(0.5, 0.1, 0.0), half=0.045)
    assert not TASKS["peg_insert"].success(shallow) and not TASKS["peg_insert"].success(off_centre)


@pytest.mark.parametrize("task", ALL_TASKS)
def test_sparse_reward_is_the_success_flag(task):
    env = gym.make(ENV_IDS[task], reward="sparse")
    env.reset(seed=0)
    for _ in range(5):
        _, r, _, _, info = env.step(env.action_space.sample())
        assert r == float(info["success"])


@pytest.mark.parametrize("task", ALL_TASKS)
def test_dense_reward_is_the_sum_of_the_named_terms(task):
    env = gym.make(ENV_IDS[task])
    env.reset(seed=1)
    _, r, _, _, info = env.step(env.action_space.sample())
    assert set(info["reward_terms"]) == set(TASKS[task].rewards)
    assert r == pytest.approx(sum(info["reward_terms"].values()))


def test_ee_delta_moves_the_gripper_and_keeps_it_pointing_down():
    env = ArmEnv(task="reach")
    env.reset(seed=0)
    start = env.ee_pos()
    for _ in range(5):
        env.step(np.array([1.0, 0.0, 0.0, -1.0], np.float32))
    moved = env.ee_pos() - start
    assert 3 * MAX_DELTA < moved[0] <= 5 * MAX_DELTA + 1e-3, moved  # most of 5 full steps in +x
    assert abs(moved[1]) < 0.01 and abs(moved[2]) < 0.02  # servo lag at full speed, corrected below
    for _ in range(5):
        env.step(np.array([0.0, 0.0, 0.0, -1.0], np.float32))
    assert abs(env.ee_pos()[2] - start[2]) < 0.005
    z_axis = env.data.site_xmat[env._ee].reshape(3, 3)[:, 2]
    assert z_axis[2] > 0.99  # the hand frame's z stays vertical: fingers point down


def test_joint_pos_action_maps_to_joint_ranges():
    env = ArmEnv(task="reach", control="joint_pos")
    assert env.action_space.shape == (7,)
    env.reset(seed=0)
    a = np.zeros(7, np.float32)
    a[0], a[6] = 1.0, 1.0  # j1 at its upper limit, gripper closed
    env.step(a)
    lo, hi = env.model.actuator_ctrlrange[:6].T
    np.testing.assert_allclose(env.data.ctrl[:6], np.where(np.arange(6) == 0, hi, (lo + hi) / 2))
    np.testing.assert_allclose(env.data.ctrl[6:8], 0.0)  # closed
    env.step(np.append(np.zeros(6), -1.0).astype(np.float32))
    np.testing.assert_allclose(env.data.ctrl[6:8], FINGER_OPEN)


@pytest.mark.parametrize("state", ["full", "proprio"])
def test_dict_observation_layout(state):
    env = ArmEnv(task="pick_place", state=state, privileged=True)
    obs, info = env.reset(seed=4)
    assert set(obs) == {"observation.state", "observation.privileged"}
    assert obs["observation.state"].shape == (STATE_DIMS[state],) and obs["observation.privileged"].shape == (PRIV_DIM,)
    priv, s = obs["observation.privileged"], obs["observation.state"]
    obj = env.data.qpos[env._obj_qpos:env._obj_qpos + 3]
    np.testing.assert_allclose(priv[:3], obj, atol=1e-6)  # object position first
    np.testing.assert_allclose(priv[10:13], env._goal, atol=1e-6)
    np.testing.assert_allclose(s[-3:], env._goal, atol=1e-6)  # the goal ends the state in both modes
    if state == "full":
        np.testing.assert_allclose(s[16:19], obj, atol=1e-6)
    np.testing.assert_array_equal(priv[-len(PARAM_NAMES):], [1, 1, 1, 1, 0, 8])  # nominal physics, 8 substeps
    assert set(info["randomization"]) >= set(PARAM_NAMES)


def test_privileged_contacts_see_the_grasp():
    env = ArmEnv(task="pick_place", privileged=True)
    obs, _ = env.reset(seed=0)
    expert = arm_expert(env)
    obs, *_ = env.step(np.array([0.0, 0.0, 0.0, -1.0], np.float32))  # reset drops the cube from 0.5 mm
    assert obs["observation.privileged"][13:16].tolist() == [0.0, 0.0, 1.0]  # on the table, untouched
    for _ in range(40):
        obs, *_ = env.step(expert.get_action(obs))
    s = env.task_state()
    assert s.obj[2] > 0.04, "the expert should be holding the cube up by now"
    assert obs["observation.privileged"][13:16].tolist() == [1.0, 1.0, 0.0]


def test_camera_observation():
    env = ArmEnv(task="push", cameras=("front",), image_size=32)
    obs, _ = env.reset(seed=0)
    img = obs["observation.images.front"]
    assert img.shape == (3, 32, 32) and img.dtype == np.uint8 and img.std() > 5
    env.close()


@pytest.mark.parametrize("task", ALL_TASKS)
@pytest.mark.parametrize("control", ["ee_delta", "joint_pos"])
def test_expert_succeeds(task, control):
    """A cheap version of the 100-episode measurement (test_expert_success_100_episodes): 10 episodes."""
    assert expert_success(task, episodes=10, control=control, seed=1000) >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("task", ALL_TASKS)
def test_expert_success_100_episodes(task):
    assert expert_success(task, episodes=100) >= 0.95


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"task": "stack"}, "task"), ({"control": "torque"}, "control"), ({"state": "pixels"}, "state"),
     ({"reward": "shaped"}, "reward"), ({"cameras": ["side"]}, "cameras"),
     ({"randomization": {"mas": (0.5, 2.0)}}, "randomization"),
     ({"randomization": {"mass": (1.5, 2.0)}}, "randomization.mass")],
)
def test_bad_kwargs_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        ArmEnv(**{"task": "reach", **kwargs})


def test_workspace_and_home_are_reachable():
    env = ArmEnv(task="reach")
    env.reset(seed=0)
    assert math.dist(env.ee_pos(), (0.4, 0.0, 0.2)) < 1e-3  # home pose solved by IK
