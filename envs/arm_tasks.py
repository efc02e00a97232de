"""The four tasks of the robopolicy arm: scene file, layout sampling, dense reward terms and success.

Rewards are dicts of small named pure functions of a ``TaskState`` (MuJoCo Playground style); the dense
reward is their sum, the sparse reward is ``float(success)``. Distances are in metres, so a dense reward is
on the order of -0.1..-1 per step far from the goal and a few units at success.

    TASKS["push"].rewards["obj_to_goal"](state) -> float
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

TABLE_Z = 0.0


class TaskState(NamedTuple):
    """What rewards and success read, all in world coordinates (metres). A NamedTuple: built every step.
    Vectors are (3,) arrays for experts and lists on the env's step path (rewards only index and take distances)."""

    ee: Sequence[float]         # (3,) gripper centre (site "ee")
    grip: float                 # finger opening, 0 (closed) .. 0.08 (open)
    obj: Sequence[float]        # (3,) object position (zeros in reach)
    obj_start: Sequence[float]  # (3,) object position at reset
    goal: Sequence[float]       # (3,) goal position
    obj_half_height: float   # half the object's height (peg: its bottom is obj[2] - this)


@dataclass(frozen=True)
class Layout:
    """Where reset puts things: object position (x, y) on the table, goal (x, y, z), socket (x, y) or None."""

    obj_xy: np.ndarray
    goal: np.ndarray
    socket_xy: np.ndarray | None = None


def _dist(a: Sequence[float], b: Sequence[float]) -> float:
    return math.dist(a, b)


# ---------------------------------------------------------------- success predicates
def reach_success(s: TaskState) -> bool:
    return _dist(s.ee, s.goal) < 0.03


def push_success(s: TaskState) -> bool:
    return _dist(s.obj[:2], s.goal[:2]) < 0.04


def pick_place_success(s: TaskState) -> bool:
    return _dist(s.obj, s.goal) < 0.04


def peg_insert_success(s: TaskState) -> bool:
    """Peg centred over the hole (< 2 cm) and its bottom at least 2.5 cm into the 6 cm deep hole."""
    return _dist(s.obj[:2], s.goal[:2]) < 0.02 and s.obj[2] - s.obj_half_height < 0.035


# ---------------------------------------------------------------- reward terms
def r_ee_to_goal(s: TaskState) -> float:
    return -_dist(s.ee, s.goal)


def r_ee_to_obj(s: TaskState) -> float:
    return -0.5 * _dist(s.ee, s.obj)


def r_obj_to_goal_xy(s: TaskState) -> float:
    return -_dist(s.obj[:2], s.goal[:2])


def r_obj_to_goal(s: TaskState) -> float:
    return -_dist(s.obj, s.goal)


def r_lift(s: TaskState) -> float:
    """Reward lifting the object up to 10 cm, only while the gripper is at it (so tossing it does not pay)."""
    near = _dist(s.ee, s.obj) < 0.04
    return 2.0 * min(max(s.obj[2] - s.obj_start[2], 0.0), 0.1) / 0.1 if near else 0.0


def r_peg_over_hole(s: TaskState) -> float:
    """Pay for the peg's xy distance to the hole only once it is off the table (carried)."""
    lifted = s.obj[2] - s.obj_start[2] > 0.01
    return -_dist(s.obj[:2], s.goal[:2]) if lifted else -0.3


def r_success(success: Callable[[TaskState], bool], bonus: float) -> Callable[[TaskState], float]:
    def term(s: TaskState) -> float:
        return bonus if success(s) else 0.0

    term.__name__ = f"success_{success.__name__}"
    return term


# ---------------------------------------------------------------- layouts
def _sample_reach(rng: np.random.Generator) -> Layout:
    goal = rng.uniform((0.3, -0.2, 0.05), (0.6, 0.2, 0.3))
    return Layout(obj_xy=np.zeros(2), goal=goal)


def _sample_obj_and_goal(rng: np.random.Generator, goal_z: tuple[float, float]) -> Layout:
    obj = rng.uniform((0.35, -0.15), (0.5, 0.15))
    while True:  # rejection: goal at least 10 cm from the object, so no episode starts solved
        goal_xy = rng.uniform((0.35, -0.2), (0.6, 0.2))
        if np.linalg.norm(goal_xy - obj) > 0.1:
            break
    return Layout(obj_xy=obj, goal=np.array([*goal_xy, rng.uniform(*goal_z)]))


def _sample_push(rng: np.random.Generator) -> Layout:
    return _sample_obj_and_goal(rng, (0.0, 0.0))


def _sample_pick_place(rng: np.random.Generator) -> Layout:
    return _sample_obj_and_goal(rng, (0.05, 0.25))


def _sample_peg_insert(rng: np.random.Generator) -> Layout:
    obj = rng.uniform((0.35, -0.2), (0.45, 0.0))
    socket = rng.uniform((0.45, 0.08), (0.6, 0.22))
    return Layout(obj_xy=obj, goal=np.array([*socket, TABLE_Z]), socket_xy=socket)


@dataclass(frozen=True)
class Task:
    name: str
    scene: str                     # file under assets/arm/
    instruction: str               # the ``task`` string of every observation and demo frame
    max_episode_steps: int
    has_object: bool
    obj_half_height: float
    sample: Callable[[np.random.Generator], Layout]
    success: Callable[[TaskState], bool]
    rewards: dict[str, Callable[[TaskState], float]]


TASKS: dict[str, Task] = {
    "reach": Task(
        "reach", "reach.xml", "move the gripper to the green goal", 40, False, 0.0, _sample_reach, reach_success,
        {"ee_to_goal": r_ee_to_goal, "success": r_success(reach_success, 1.0)},
    ),
    "push": Task(
        "push", "push.xml", "push the puck to the green goal", 80, True, 0.015, _sample_push, push_success,
        {"ee_to_obj": r_ee_to_obj, "obj_to_goal": r_obj_to_goal_xy, "success": r_success(push_success, 1.0)},
    ),
    "pick_place": Task(
        "pick_place", "pick_place.xml", "pick up the cube and hold it at the green goal", 80, True, 0.02,
        _sample_pick_place, pick_place_success,
        {"ee_to_obj": r_ee_to_obj, "lift": r_lift, "obj_to_goal": r_obj_to_goal,
         "success": r_success(pick_place_success, 2.0)},
    ),
    "peg_insert": Task(
        "peg_insert", "peg_insert.xml", "insert the peg into the blue socket", 100, True, 0.045,
        _sample_peg_insert, peg_insert_success,
        {"ee_to_obj": r_ee_to_obj, "lift": r_lift, "peg_over_hole": r_peg_over_hole,
         "success": r_success(peg_insert_success, 2.0)},
    ),
}
