"""Scripted experts of the robopolicy arm: one stateless rule per task, from the true simulator state.

    expert = arm_expert(env)              # env: an ArmEnv, possibly gym-wrapped
    action = expert.get_action(obs)       # (4,) ee_delta or (7,) joint_pos, whatever the env's control mode is

Each rule picks a gripper-centre waypoint from the current state (no memory, so a slipped grasp is simply
retried) and moves toward it with a saturated proportional step; in joint_pos mode the env's differential IK
turns that step into joint targets. The rules read the simulator, not ``obs``: under randomization the
expert sees through observation noise (it is a teacher with privileged state, as Meta-World's experts are).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.arm import MAX_DELTA, ArmEnv
from envs.arm_tasks import TaskState

GAIN = 0.6           # fraction of the remaining distance commanded per control step (< 1: stable with latency)
OPEN, CLOSE = -1.0, 1.0
PUCK_R = 0.03        # push.xml puck radius
SAFE_Z = 0.1         # travel height above the table for the gripper centre
CARRY_SPEED = 0.6
PUSH_SPEED = 0.5


def _toward(ee: np.ndarray, waypoint: np.ndarray, gripper: float, speed: float = 1.0, gain: float = GAIN) -> np.ndarray:
    step = np.clip(gain * (waypoint - ee) / MAX_DELTA, -speed, speed)
    return np.append(step, gripper)


def reach_rule(s: TaskState, gain: float = GAIN) -> np.ndarray:
    return _toward(s.ee, s.goal, OPEN, gain=gain)


def push_rule(s: TaskState, gain: float = GAIN) -> np.ndarray:
    """Get behind the puck (seen from the goal) at table height, then drive it to the goal with closed fingers."""
    low = 0.02
    to_goal = s.goal[:2] - s.obj[:2]
    dist_goal = float(np.linalg.norm(to_goal))
    u = to_goal / max(dist_goal, 1e-6)
    behind = s.obj[:2] - u * (PUCK_R + 0.03)
    rel = s.ee[:2] - s.obj[:2]
    along = float(rel @ u)
    lateral = float(np.linalg.norm(rel - along * u))
    if along < -(PUCK_R + 0.01):  # the gripper is behind the puck
        if s.ee[2] > low + 0.02 or lateral > 0.012:
            return _toward(s.ee, np.array([*behind, low]), CLOSE, gain=gain)
        aim = s.goal[:2] - u * (PUCK_R + 0.012)  # where the gripper is when the puck's centre is on the goal
        return _toward(s.ee, np.array([*aim, low]), CLOSE, speed=PUSH_SPEED, gain=gain)  # faster kicks the puck away
    if s.ee[2] < SAFE_Z - 0.03 and np.linalg.norm(s.ee[:2] - behind) > 0.02:
        return _toward(s.ee, np.array([*s.ee[:2], SAFE_Z]), CLOSE, gain=gain)  # lift before going around the puck
    return _toward(s.ee, np.array([*behind, SAFE_Z]), CLOSE, gain=gain)


def _grasp_rule(
    s: TaskState, grasp_dz: float, width: float, carry: np.ndarray, gain: float = GAIN
) -> np.ndarray:
    """Approach from above, descend, close; once held, go to ``carry``. Held = the closing fingers were stopped
    by something as wide as the object while the gripper is at it (a miss closes them to 0)."""
    grasp = s.obj + np.array([0.0, 0.0, grasp_dz])
    held = np.linalg.norm(s.ee - grasp) < 0.04 and width - 0.012 < s.grip < width + 0.006
    if held:  # carry at 60% speed: the object swings in the grasp under harder accelerations
        return _toward(s.ee, carry, CLOSE, speed=CARRY_SPEED, gain=gain)
    xy_err = float(np.linalg.norm(s.ee[:2] - grasp[:2]))
    clear = s.obj[2] + s.obj_half_height + 0.04  # fingertips 2.5 cm above the object's top
    if xy_err > 0.008:
        z = clear if xy_err > 0.02 else max(s.ee[2], grasp[2] + 0.02)
        return _toward(s.ee, np.array([*grasp[:2], z]), OPEN, gain=gain)
    if s.ee[2] - grasp[2] > 0.008 and s.grip > width + 0.006:
        return _toward(s.ee, grasp, OPEN, gain=gain)
    return _toward(s.ee, grasp, CLOSE, gain=gain)


def pick_place_rule(s: TaskState, gain: float = GAIN) -> np.ndarray:
    return _grasp_rule(s, 0.0, 0.04, s.goal, gain=gain)


def peg_insert_rule(s: TaskState, gain: float = GAIN) -> np.ndarray:
    """Grasp the peg 2.5 cm above its centre (fingers stay above the socket), lift it clear, carry it over the
    hole, then lower it in."""
    offset = s.ee - s.obj  # position the peg, not the gripper
    xy_err = float(np.linalg.norm(s.obj[:2] - s.goal[:2]))
    bottom = s.obj[2] - s.obj_half_height
    over_hole = s.goal[:2] + offset[:2]
    if xy_err < 0.006 or (xy_err < 0.015 and bottom < 0.085):
        carry = np.array([*over_hole, 0.01 + s.obj_half_height + offset[2]])
    elif bottom < 0.08:
        carry = np.array([*s.ee[:2], 0.17])
    else:
        carry = np.array([*over_hole, 0.17])
    return _grasp_rule(s, 0.025, 0.03, carry, gain=gain)


RULES = {"reach": reach_rule, "push": push_rule, "pick_place": pick_place_rule, "peg_insert": peg_insert_rule}


class ArmExpert:
    """``get_action(obs) -> action`` in the env's control mode (the Meta-World expert interface)."""

    def __init__(self, env: Any) -> None:
        self.env: ArmEnv = env.unwrapped
        if not isinstance(self.env, ArmEnv):
            raise TypeError(f"arm_expert needs an ArmEnv, got {type(self.env).__name__}")
        self.rule = RULES[self.env.task.name]

    def get_action(self, obs: Any = None) -> np.ndarray:
        # With k control steps of action latency a proportional step of gain g overshoots; g / (1 + k) does not.
        gain = GAIN / (1 + self.env.randomization_sample().action_latency)
        ee_action = self.rule(self.env.task_state(), gain=gain)
        if self.env.control == "joint_pos":
            return self.env.joint_action_for(ee_action).astype(np.float32)
        return ee_action.astype(np.float32)


def arm_expert(env: Any) -> ArmExpert:
    return ArmExpert(env)


def expert_success(
    task: str,
    episodes: int = 100,
    control: str = "ee_delta",
    randomization: dict[str, Any] | None = None,
    seed: int = 0,
) -> float:
    """Fraction of ``episodes`` (reset seeds seed .. seed + episodes - 1) in which the expert succeeds at
    some step; the episode runs to the task's time limit."""
    from envs.arm_tasks import TASKS

    env = ArmEnv(task=task, control=control, randomization=randomization)
    expert = ArmExpert(env)
    wins = 0
    try:
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep)
            for _ in range(TASKS[task].max_episode_steps):
                obs, _, _, _, info = env.step(expert.get_action(obs))
                if info["success"]:
                    wins += 1
                    break
    finally:
        env.close()
    return wins / episodes


def main(argv: list[str] | None = None) -> None:
    """``python -m envs.arm_experts [--episodes 100] [--control ee_delta] [--randomize]``: one JSON line per task."""
    import argparse
    import json
    import time

    from envs.arm_tasks import TASKS

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--tasks", nargs="+", default=list(TASKS))
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--control", default="ee_delta")
    p.add_argument("--randomize", action="store_true", help="default domain randomization (RandomizationConfig)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for task in args.tasks:
        t0 = time.perf_counter()
        rate = expert_success(task, args.episodes, args.control, {"enabled": True} if args.randomize else None,
                              args.seed)
        print(json.dumps({"task": task, "control": args.control, "randomized": args.randomize,
                          "episodes": args.episodes, "success": rate, "seconds": round(time.perf_counter() - t0, 1)}),
              flush=True)


if __name__ == "__main__":
    main()
