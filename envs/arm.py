"""The robopolicy arm (assets/arm/*.xml): a 6-DoF arm with a parallel gripper on a table, four tasks.

Gymnasium ids (registered by ``import envs``; ``max_episode_steps`` per task):
    robopolicy/Arm-Reach-v0 (40)   robopolicy/Arm-Push-v0 (80)   robopolicy/Arm-PickPlace-v0 (80)
    robopolicy/Arm-PegInsert-v0 (100)

Control (25 Hz: ``substeps`` = 8 physics steps of 5 ms per control step), ``control=``
    "ee_delta"   action (4,) in [-1, 1]: gripper-centre xyz displacement (x MAX_DELTA = 3 cm) and gripper
                 (-1 open .. +1 closed); the hand stays pointing down, differential IK turns it into joint targets.
    "joint_pos"  action (7,) in [-1, 1]: absolute targets of the six joints over their ranges, and gripper.

Observation: with no privileged state and no camera it is the Box ``observation.state`` alone (fast path
for RL); otherwise a Dict with
    observation.state          (D,) float32  state="full" (D=26): joint pos (6), joint vel (6), finger
                               opening (1), gripper xyz (3), object xyz (3) and quaternion (4), goal xyz (3);
                               state="proprio" (D=19): the same without the object (what a real robot knows)
    observation.privileged     (P,) float32  P=22: object xyz, quat, linear velocity, goal xyz, contacts
                               (left finger-object, right finger-object, object-table), and the episode's physics
                               parameters ``randomization.PARAM_NAMES`` (object mass scale, friction, damping, gain,
                               action latency, substeps)
    observation.images.<cam>   (3, S, S) uint8 offscreen render, cam in {"front", "top"}, S = image_size
info: ``success`` (bool) every step; ``reward_terms`` (dict); ``randomization`` (dict) after reset.
Rewards: ``reward="dense"`` sums the task's named terms (envs/arm_tasks.py), ``"sparse"`` is float(success).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.spaces import Box, Dict

from envs.arm_tasks import TASKS, Layout, TaskState
from envs.randomization import PARAM_NAMES, DRSample, RandomizationConfig, sample_randomization

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "arm"
ENV_IDS = {
    "reach": "robopolicy/Arm-Reach-v0",
    "push": "robopolicy/Arm-Push-v0",
    "pick_place": "robopolicy/Arm-PickPlace-v0",
    "peg_insert": "robopolicy/Arm-PegInsert-v0",
}
CONTROLS = ("ee_delta", "joint_pos")
CAMERAS = ("front", "top")
N_ARM = 6
MAX_DELTA = 0.03                  # m of gripper motion per control step at |action| = 1
MAX_LEAD = 0.05                   # the integrated ee target never runs further than this ahead of the gripper
FINGER_OPEN = 0.04                # m per finger
WORKSPACE = (np.array([0.2, -0.35, 0.018]), np.array([0.62, 0.35, 0.45]))  # x <= 0.62: the arm's reach
_WS_LO, _WS_HI = WORKSPACE[0].tolist(), WORKSPACE[1].tolist()
HOME_EE = np.array([0.4, 0.0, 0.2])
DOWN = np.array([1.0, 0.0, 0.0, 0.0])  # hand orientation: identity = pointing down, fingers along y
STATE_DIMS = {"full": 26, "proprio": 19}
PRIV_DIM = 16 + len(PARAM_NAMES)


class ArmEnv(gym.Env):
    """One task of the robopolicy arm. See the module docstring for spaces; kwargs are the gym.make kwargs."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 25}
    _home_cache: ClassVar[dict[str, np.ndarray]] = {}

    def __init__(
        self,
        task: str = "reach",
        control: str = "ee_delta",
        state: str = "full",
        privileged: bool = False,
        cameras: tuple[str, ...] | list[str] = (),
        image_size: int = 84,
        reward: str = "dense",
        substeps: int = 8,
        randomization: RandomizationConfig | dict[str, Any] | None = None,
        render_mode: str | None = None,
        render_size: tuple[int, int] = (240, 320),
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"task: unknown arm task {task!r}; known: {sorted(TASKS)}")
        if control not in CONTROLS:
            raise ValueError(f"control: must be one of {CONTROLS}, got {control!r}")
        if state not in STATE_DIMS:
            raise ValueError(f"state: must be one of {tuple(STATE_DIMS)}, got {state!r}")
        if reward not in ("dense", "sparse"):
            raise ValueError(f"reward: must be 'dense' or 'sparse', got {reward!r}")
        cameras = tuple(cameras)
        for cam in cameras:
            if cam not in CAMERAS:
                raise ValueError(f"cameras: unknown camera {cam!r}; known: {CAMERAS}")
        if int(image_size) < 8 or int(substeps) < 1:
            raise ValueError(f"image_size must be >= 8 and substeps >= 1, got {image_size}, {substeps}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode: must be None or 'rgb_array', got {render_mode!r}")
        self.task = TASKS[task]
        self.control, self.state_mode, self.reward_mode = control, state, reward
        self.privileged, self.cameras, self.image_size = bool(privileged), cameras, int(image_size)
        self.substeps = int(substeps)
        self.dr = RandomizationConfig.from_any(randomization)
        self.render_mode, self.render_size = render_mode, tuple(render_size)

        self.model = mujoco.MjModel.from_xml_path(str(ASSETS / self.task.scene))
        self.data = mujoco.MjData(self.model)
        m = self.model
        self._ee = m.site("ee").id
        self._goal_site = m.site("goal").id
        self._obj_body = m.body("obj").id if self.task.has_object else -1
        self._obj_qpos = m.jnt_qposadr[m.joint("obj").id] if self.task.has_object else -1
        self._obj_dof = m.jnt_dofadr[m.joint("obj").id] if self.task.has_object else -1
        self._socket = m.body("socket").id if task == "peg_insert" else -1
        self._finger_geoms = (m.geom("finger_l").id, m.geom("finger_r").id)
        self._obj_geom = m.geom("obj").id if self.task.has_object else -1
        self._table_geom = m.geom("table").id
        self._ctrl_lo, self._ctrl_hi = m.actuator_ctrlrange[:N_ARM, 0].copy(), m.actuator_ctrlrange[:N_ARM, 1].copy()
        self._nominal = {k: getattr(m, k).copy() for k in (
            "body_mass", "geom_friction", "dof_damping", "actuator_gainprm", "actuator_biasprm", "cam_pos",
            "cam_quat", "light_pos", "light_diffuse", "geom_rgba")}
        self._dr_geoms = [g for g in range(m.ngeom) if m.geom_bodyid[g] in (self._obj_body, self._socket)
                          or g == self._table_geom]
        self._jac, self._A, self._damping = np.zeros((6, m.nv)), np.zeros((6, 6)), 1e-4 * np.eye(6)
        self._quat, self._err, self._y = np.zeros(4), np.zeros(6), np.zeros(6)
        self._home = self._solve_home()

        act_dim = 4 if control == "ee_delta" else N_ARM + 1
        self.action_space = Box(-1.0, 1.0, (act_dim,), np.float32)
        self.state_dim = STATE_DIMS[state]
        state_space = Box(-np.inf, np.inf, (self.state_dim,), np.float32)
        if not self.privileged and not cameras:
            self.observation_space = state_space
        else:
            spaces = {"observation.state": state_space}
            if self.privileged:
                spaces["observation.privileged"] = Box(-np.inf, np.inf, (PRIV_DIM,), np.float32)
            for cam in cameras:
                spaces[f"observation.images.{cam}"] = Box(0, 255, (3, self.image_size, self.image_size), np.uint8)
            self.observation_space = Dict(spaces)
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._state_buf = np.zeros(self.state_dim)
        if state == "full":
            self._state_buf[19] = 1.0  # the identity quaternion where a task has no object
        self._goal = np.zeros(3)
        self._obj_start = np.zeros(3)
        self._target = HOME_EE.copy()
        self._sample = DRSample(obs_bias=np.zeros(self.state_dim))
        self._actions: deque[np.ndarray] = deque(maxlen=1)

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        layout = self.task.sample(rng)
        self._sample = sample_randomization(self.dr, rng, self.state_dim)
        self._sample.substeps = self.substeps
        self._apply_randomization(self._sample)
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        d.qpos[:N_ARM] = self._home
        d.qpos[N_ARM:N_ARM + 2] = FINGER_OPEN
        self._place(layout)
        d.ctrl[:N_ARM] = self._home
        d.ctrl[N_ARM:N_ARM + 2] = FINGER_OPEN
        mujoco.mj_forward(m, d)
        self._target = d.site_xpos[self._ee].copy()
        self._obj_start = self._obj_pos().copy()
        self._obj_start_l, self._goal_l = self._obj_start.tolist(), self._goal.tolist()
        hold = self._hold_action()
        self._actions = deque([hold] * (self._sample.action_latency + 1), maxlen=self._sample.action_latency + 1)
        return self._obs(), {"success": False, "randomization": self._sample.as_info()}

    def step(self, action: np.ndarray):
        a = np.minimum(np.maximum(np.asarray(action, dtype=np.float64), -1.0), 1.0)
        if self._sample.action_latency:
            self._actions.append(a)
            a = self._actions[0]  # with latency k, the action sent k control steps ago
        self._apply_action(a)
        n = self.substeps
        if self._sample.control_jitter:
            j = self._sample.control_jitter
            n = max(1, n + int(self.np_random.integers(-j, j + 1)))
        mujoco.mj_step(self.model, self.data, nstep=n)
        s = self._task_state(arrays=False)
        success = self.task.success(s)
        terms = {k: f(s) for k, f in self.task.rewards.items()}
        reward = sum(terms.values()) if self.reward_mode == "dense" else float(success)
        return self._obs(), reward, False, False, {"success": success, "reward_terms": terms}

    def render(self) -> np.ndarray:
        """(H, W, 3) uint8 frame from the "front" camera, (H, W) = ``render_size``."""
        return self._render("front", *self.render_size)

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()

    # ------------------------------------------------------------------ public helpers (experts, curriculum)
    def set_randomization_scale(self, scale: float) -> None:
        """Used from the next reset on (``envs.randomization.Curriculum``)."""
        self.dr = dataclasses.replace(self.dr, scale=float(scale))  # validated again in __post_init__

    def randomization_sample(self) -> DRSample:
        """This episode's draw (experts read the action latency from it)."""
        return self._sample

    def randomization_vector(self) -> np.ndarray:
        """(len(PARAM_NAMES),) float32: this episode's physics parameters (what demos store per frame)."""
        return self._sample.vector()

    def ee_pos(self) -> np.ndarray:
        return self.data.site_xpos[self._ee].copy()

    def task_state(self) -> TaskState:
        return self._task_state()

    def joint_action_for(self, ee_action: np.ndarray) -> np.ndarray:
        """The joint_pos action (7,) that realizes the ee_delta action (4,) from the current state (for experts).
        It advances the same integrated gripper target as ee_delta control (unused otherwise in joint_pos mode),
        so an expert moves alike in both modes."""
        self._target = self._next_target(np.asarray(ee_action[:3], dtype=np.float64))
        q = self._ik(self._target)
        return np.append((2 * q - self._ctrl_lo - self._ctrl_hi) / (self._ctrl_hi - self._ctrl_lo), ee_action[3])

    # ------------------------------------------------------------------ internals
    def _obj_pos(self) -> np.ndarray:
        return self.data.qpos[self._obj_qpos:self._obj_qpos + 3] if self.task.has_object else np.zeros(3)

    def _hold_action(self) -> np.ndarray:
        if self.control == "ee_delta":
            return np.array([0.0, 0.0, 0.0, -1.0])
        return np.append((2 * self._home - self._ctrl_lo - self._ctrl_hi) / (self._ctrl_hi - self._ctrl_lo), -1.0)

    def _place(self, layout: Layout) -> None:
        m, d = self.model, self.data
        self._goal = np.asarray(layout.goal, dtype=np.float64).copy()
        if self._socket >= 0:
            m.body_pos[self._socket, :2] = layout.socket_xy
            self._goal[2] = 0.0
        else:
            m.site_pos[self._goal_site] = self._goal
        if self.task.has_object:
            q = self._obj_qpos
            d.qpos[q:q + 3] = (*layout.obj_xy, self.task.obj_half_height + 0.0005)
            d.qpos[q + 3:q + 7] = (1.0, 0.0, 0.0, 0.0)

    def _next_target(self, delta: np.ndarray) -> np.ndarray:
        """Integrate the ee target, at most MAX_LEAD ahead of the gripper and inside WORKSPACE (no wind-up).
        Plain floats: on 3-vectors Python arithmetic beats six numpy calls."""
        ee, t, dl = self.data.site_xpos[self._ee].tolist(), self._target.tolist(), delta.tolist()
        return np.array([min(max(t[i] + dl[i] * MAX_DELTA, ee[i] - MAX_LEAD, _WS_LO[i]), ee[i] + MAX_LEAD, _WS_HI[i])
                         for i in range(3)])

    def _apply_action(self, a: np.ndarray) -> None:
        d = self.data
        if self.control == "ee_delta":
            self._target = self._next_target(a[:3])
            d.ctrl[:N_ARM] = self._ik(self._target)
        else:
            d.ctrl[:N_ARM] = self._ctrl_lo + (a[:N_ARM] + 1.0) * 0.5 * (self._ctrl_hi - self._ctrl_lo)
        d.ctrl[N_ARM:N_ARM + 2] = FINGER_OPEN * (1.0 - a[-1]) * 0.5

    def _ik(self, target: np.ndarray, data: mujoco.MjData | None = None) -> np.ndarray:
        """One damped-least-squares step toward ``target`` (3,) with the hand pointing down: joint targets (6,).

        dq = J^T (J J^T + lambda I)^-1 e, e = (position error, orientation error as a rotation vector), J (6, 6).
        Written against preallocated buffers: this runs every control step and numpy's per-call cost dominates.
        """
        m, d = self.model, data or self.data
        jac, A, err, quat = self._jac, self._A, self._err, self._quat
        mujoco.mj_jacSite(m, d, jac[:3], jac[3:], self._ee)
        J = jac[:, :N_ARM]
        np.subtract(target, d.site_xpos[self._ee], out=err[:3])
        # DOWN is the identity, so the world-frame rotation from the hand to DOWN is the hand's inverse.
        mujoco.mju_mat2Quat(quat, d.site_xmat[self._ee])
        mujoco.mju_negQuat(quat, quat)
        mujoco.mju_quat2Vel(err[3:], quat, 1.0)
        np.matmul(J, J.T, out=A)
        A += self._damping
        mujoco.mju_cholFactor(A, 0.0)
        mujoco.mju_cholSolve(self._y, A, err)
        q = d.qpos[:N_ARM] + J.T @ self._y
        return np.minimum(np.maximum(q, self._ctrl_lo), self._ctrl_hi)

    def _solve_home(self) -> np.ndarray:
        """Joint angles that put the gripper at HOME_EE pointing down (iterated IK, cached per scene)."""
        key = self.task.scene
        if key not in self._home_cache:
            d = mujoco.MjData(self.model)
            d.qpos[:N_ARM] = (0.0, 0.3, 0.8, -1.1, 0.0, 0.0)
            for _ in range(200):
                mujoco.mj_kinematics(self.model, d)
                mujoco.mj_comPos(self.model, d)
                d.qpos[:N_ARM] = self._ik(HOME_EE, d)
            self._home_cache[key] = d.qpos[:N_ARM].copy()
        return self._home_cache[key].copy()

    def _apply_randomization(self, s: DRSample) -> None:
        m, nom = self.model, self._nominal
        if self._obj_body >= 0:
            m.body_mass[self._obj_body] = nom["body_mass"][self._obj_body] * s.obj_mass_scale
        m.geom_friction[:, 0] = nom["geom_friction"][:, 0] * s.friction_scale
        m.dof_damping[:N_ARM] = nom["dof_damping"][:N_ARM] * s.damping_scale
        m.actuator_gainprm[:, 0] = nom["actuator_gainprm"][:, 0] * s.gain_scale
        m.actuator_biasprm[:, 1] = nom["actuator_biasprm"][:, 1] * s.gain_scale
        m.actuator_biasprm[:, 2] = nom["actuator_biasprm"][:, 2] * np.sqrt(s.gain_scale)
        m.cam_pos[:] = nom["cam_pos"] + s.camera_dpos
        for i in range(m.ncam):
            q = nom["cam_quat"][i].copy()
            mujoco.mju_quatIntegrate(q, s.camera_drot, 1.0)
            m.cam_quat[i] = q
        m.light_pos[:] = nom["light_pos"] + s.light_dpos
        m.light_diffuse[:] = np.clip(nom["light_diffuse"] * s.light_scale, 0, 1)
        for g in self._dr_geoms:
            m.geom_rgba[g, :3] = np.clip(nom["geom_rgba"][g, :3] + s.colour_offset, 0, 1)

    def _task_state(self, arrays: bool = True) -> TaskState:
        """Arrays (for experts) or, on the step path, lists: math.dist on lists is 3x faster than numpy."""
        d = self.data
        ee, obj = d.site_xpos[self._ee].copy(), self._obj_pos().copy()
        grip = float(d.qpos[N_ARM] + d.qpos[N_ARM + 1])
        if arrays:
            return TaskState(ee, grip, obj, self._obj_start.copy(), self._goal.copy(), self.task.obj_half_height)
        return TaskState(ee.tolist(), grip, obj.tolist(), self._obj_start_l, self._goal_l, self.task.obj_half_height)

    def _state(self) -> np.ndarray:
        """(D,) float32, written slice by slice into a preallocated buffer (concatenate costs more)."""
        d, x = self.data, self._state_buf
        x[0:6] = d.qpos[:N_ARM]
        x[6:12] = d.qvel[:N_ARM]
        x[12] = d.qpos[N_ARM] + d.qpos[N_ARM + 1]
        x[13:16] = d.site_xpos[self._ee]
        if self.state_mode == "full":
            q = self._obj_qpos
            if q >= 0:
                x[16:23] = d.qpos[q:q + 7]
        x[-3:] = self._goal
        s = self._sample
        if s.obs_noise:
            return (x + s.obs_bias + self.np_random.normal(0.0, s.obs_noise, x.shape)).astype(np.float32)
        return x.astype(np.float32)

    def _privileged(self) -> np.ndarray:
        d = self.data
        q, v = self._obj_qpos, self._obj_dof
        pose = d.qpos[q:q + 7] if q >= 0 else np.array([0, 0, 0, 1.0, 0, 0, 0])
        vel = d.qvel[v:v + 3] if v >= 0 else np.zeros(3)
        n = d.ncon
        g1, g2 = d.contact.geom1[:n], d.contact.geom2[:n]

        def touching(a: int, b: int) -> float:
            return float(np.any(((g1 == a) & (g2 == b)) | ((g1 == b) & (g2 == a)))) if n else 0.0

        o = self._obj_geom
        contacts = [touching(self._finger_geoms[0], o), touching(self._finger_geoms[1], o), touching(o, self._table_geom)]
        return np.concatenate([pose, vel, self._goal, contacts, self._sample.vector()]).astype(np.float32)

    def _obs(self) -> np.ndarray | dict[str, np.ndarray]:
        state = self._state()
        if not self.privileged and not self.cameras:
            return state
        out = {"observation.state": state}
        if self.privileged:
            out["observation.privileged"] = self._privileged()
        for cam in self.cameras:
            out[f"observation.images.{cam}"] = self._render(cam, self.image_size, self.image_size).transpose(2, 0, 1)
        return out

    def _render(self, camera: str, height: int, width: int) -> np.ndarray:
        key = (height, width)
        if key not in self._renderers:
            self._renderers[key] = mujoco.Renderer(self.model, height, width)
        r = self._renderers[key]
        r.update_scene(self.data, camera=camera)
        return r.render()


def register() -> None:
    """Register the four arm ids with gymnasium (idempotent)."""
    for task, env_id in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point="envs.arm:ArmEnv", max_episode_steps=TASKS[task].max_episode_steps,
                         kwargs={"task": task})
