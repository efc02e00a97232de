"""`robopolicy fleet robot`: build the env backend, get the learner's policy, run the control loop.

    robopolicy fleet robot robot_id=robot-0 learner=127.0.0.1:50051 ca=certs/ca.pem token_file=certs/tokens.json \\
        spool=runs/spool/robot-0 env_kwargs.task=reach-v3 teleop.kind=scripted

Prints one JSON line per finished episode and a summary at the end. SIGINT / SIGTERM end the current episode,
then the spool is drained (up to 10 s) before exit; what is left stays spooled for the next start.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path

import grpc
import gymnasium as gym
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from fleet.client import FleetClient
from fleet.codec import ENCODINGS
from fleet.config import RobotConfig
from fleet.robot import InferenceWorker, RobotLoop, ScriptedTeleop, sim_spec
from fleet.run_learner import FleetConfigError
from robopolicy.types import OBS_STATE

log = logging.getLogger(__name__)


def robot_token(cfg: RobotConfig) -> str:
    if cfg.token:
        return cfg.token
    if not cfg.token_file:
        raise FleetConfigError("token: pass token=<secret> or token_file=<tokens.json>")
    path = Path(cfg.token_file)
    if not path.is_file():
        raise FleetConfigError(f"token_file: {path} not found")
    tokens = json.loads(path.read_text())
    if cfg.robot_id not in tokens:
        raise FleetConfigError(f"token_file: {path} has no token for robot_id {cfg.robot_id!r}")
    return tokens[cfg.robot_id]


def make_sim_env(cfg: RobotConfig) -> gym.Env:
    try:
        return gym.make(cfg.env_id, max_episode_steps=cfg.max_episode_steps, disable_env_checker=True,
                        **dict(cfg.env_kwargs))
    except Exception as err:
        raise FleetConfigError(f"env_id: cannot build {cfg.env_id!r} with env_kwargs {dict(cfg.env_kwargs)}: {err}") \
            from err


def task_text(cfg: RobotConfig) -> str:
    if cfg.task:
        return cfg.task
    if cfg.backend == "lerobot":
        return f"lerobot:{cfg.lerobot_robot.get('type', 'robot')}"
    if "MetaWorld" in cfg.env_id and "task" in cfg.env_kwargs:
        from envs.metaworld import instruction

        return instruction(cfg.env_kwargs["task"])
    return cfg.env_id


def wait_for_policy(client: FleetClient, timeout: float = 120.0):
    """(version, policy, published_at) of the learner's latest version; waits while none is published."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.fetch_policy(-1)
        except grpc.RpcError as err:
            if err.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
                              grpc.StatusCode.INVALID_ARGUMENT) or time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def make_lerobot_env(cfg: RobotConfig) -> gym.Env:
    from fleet.lerobot_robot import LeRobotBackendError, LeRobotEnv, make_lerobot_robot

    try:
        robot = make_lerobot_robot(dict(cfg.lerobot_robot), list(cfg.lerobot_imports))
    except LeRobotBackendError as err:
        raise FleetConfigError(str(err)) from err
    robot.connect()
    try:
        return LeRobotEnv(robot, cfg.max_episode_steps, fps=int(cfg.control_hz) or 30,
                          cameras=list(cfg.lerobot_cameras), image_size=cfg.lerobot_image_size)
    except LeRobotBackendError as err:
        robot.disconnect()  # a config error must not leave the robot's bus and cameras open
        raise FleetConfigError(str(err)) from err


def probe_obs(space: gym.Space) -> dict[str, torch.Tensor]:
    """Zeros shaped like one observation with B=1, for the policy's probe step."""
    if isinstance(space, gym.spaces.Dict):
        return {k: torch.zeros((1, *s.shape), dtype=torch.uint8 if s.dtype == np.uint8 else torch.float32)
                for k, s in space.spaces.items()}
    return {OBS_STATE: torch.zeros(1, int(np.prod(space.shape)))}


def build_robot(cfg: RobotConfig) -> tuple[RobotLoop, FleetClient]:
    if cfg.backend == "sim":
        env = make_sim_env(cfg)
    elif cfg.backend == "lerobot":
        if cfg.teleop.kind == "scripted":
            raise FleetConfigError("teleop.kind: scripted needs a Meta-World sim robot; use none with backend=lerobot")
        env = make_lerobot_env(cfg)
    else:
        raise FleetConfigError(f"backend: {cfg.backend!r}, expected sim or lerobot")
    if cfg.image_encoding not in ENCODINGS:
        raise FleetConfigError(f"image_encoding: {cfg.image_encoding!r}, expected one of {ENCODINGS}")
    task = task_text(cfg)
    spec = sim_spec(cfg.robot_id, env, task, trace_dim=0, fps=int(env.metadata.get("render_fps", 30) or 30),
                    image_encoding=cfg.image_encoding)
    client = FleetClient(cfg.learner, spec, robot_token(cfg), cfg.spool, ca=cfg.ca,
                         max_message_bytes=cfg.max_message_bytes)
    version, policy, _ = wait_for_policy(client)
    if (policy.config.state_dim, policy.config.action_dim) != (spec.state_dim, spec.action_dim):
        raise FleetConfigError(f"env_id: the learner's policy has (state_dim, action_dim) = "
                               f"{(policy.config.state_dim, policy.config.action_dim)}, this robot's env "
                               f"{(spec.state_dim, spec.action_dim)}")
    streamed = [c.name for c in spec.cameras]
    missing = [c for c in policy.config.encoder.image.cameras if c not in streamed]
    if missing:
        raise FleetConfigError(f"encoder.image.cameras: the learner's policy reads cameras {missing}, this robot "
                               f"streams {streamed} (backend=lerobot: request them with lerobot_cameras=[...])")
    with torch.inference_mode():
        probe = policy.act(probe_obs(env.observation_space))
    spec.trace_dim = int(probe.trace[0].numel())
    spec.chunk, spec.num_decisions = int(probe.actions.shape[1]), int(probe.logp.shape[1])
    if cfg.execute is not None and not 1 <= cfg.execute <= spec.chunk:
        raise FleetConfigError(f"execute: {cfg.execute}, expected null or 1..{spec.chunk} (the chunk of the "
                               "learner's policy)")
    client.session = None  # register again with the trace size, H and S
    client.policy_version = version
    worker = InferenceWorker(policy, version, cfg.deterministic)
    client.on_policy = worker.set_policy
    teleop = None
    if cfg.teleop.kind == "scripted":
        teleop = ScriptedTeleop(cfg.env_kwargs.get("task", ""), cfg.max_episode_steps, cfg.teleop.takeover_after)
    elif cfg.teleop.kind != "none":
        raise FleetConfigError(f"teleop.kind: {cfg.teleop.kind!r} is not available yet; use none or scripted")
    loop = RobotLoop(env, client, worker, spec.trace_dim, cfg.chunk_steps, cfg.control_hz, teleop, cfg.seed,
                     seeded_resets=cfg.backend == "sim", execute=cfg.execute)  # hardware cannot be reset to a seed
    return loop, client


def run_robot(cfg: RobotConfig | DictConfig) -> int:
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    torch.set_num_threads(cfg.torch_threads)
    loop, client = build_robot(cfg)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: loop.stop())
    client.start()
    print(json.dumps({"event": "running", "robot_id": cfg.robot_id, "policy_version": client.policy_version}),
          flush=True)
    done = 0
    while not loop._stop.is_set() and (cfg.episodes <= 0 or loop.episodes < cfg.episodes):
        loop.run(episodes=loop.episodes + 1)
        if loop.episodes > done:
            done = loop.episodes
            print(json.dumps({"event": "episode", "n": done, "success": loop.successes[-1],
                              "policy_version": loop.worker.version, "spooled": len(client.spool)}), flush=True)
    loop.worker.close()
    loop.env.close()  # a LeRobot robot disconnects here
    client.stop(drain_s=10.0)
    print(json.dumps({"event": "stopped", "episodes": loop.episodes, "acked": client.acked,
                      "spooled": len(client.spool), "success": float(np.mean(loop.successes or [0])),
                      "weights_rejected": client.weights_rejected, "rejected": client.rejected}), flush=True)
    return 0
