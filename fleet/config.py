"""Typed schemas of ``configs/fleet/*.yaml`` (learner, robot, demo), registered in Hydra's ConfigStore."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class FleetTrainConfig:
    algo: str = "none"
    """none (ingest and serve weights only), ppo (on robot rollouts), grpo (PPO with group-relative advantages over
    episodes that share a learner-issued reset seed; fleet.groups), hg_dagger (intervention segments as labels) or
    recap (advantage-conditioned imitation of all fleet data, interventions labelled positive; fleet.recap)."""
    init_policy: str | None = None
    """Policy / checkpoint / run folder published as the first version (robots start from it)."""
    n_steps: int = 256
    """Policy steps (action chunks) per lane in one rollout (T); the batch is T x lanes (grpo: T = longest episode)."""
    lanes: int = 8
    """B: parallel lanes the fleet's episodes are packed into (grpo: episodes per batch, a multiple of group_size)."""
    max_policy_lag: int = 1
    """Use transitions whose policy version is >= current - max_policy_lag."""
    stale: str = "drop"
    """drop: discard older transitions; importance: keep them, PPO's ratio corrects them (clipped)."""
    updates: int = 0
    """Stop after this many updates (0: never)."""
    algo_options: dict[str, Any] = field(default_factory=dict)
    """Fields of PPOConfig (ppo, grpo: group_size, advantage grpo|gdpo), HGDAggerConfig (hg_dagger) or RecapConfig
    (recap)."""
    seed: int = 0
    """Torch seed of the learner."""


@dataclass
class LearnerConfig:
    root: str = MISSING
    """Store folder: index.sqlite, shards/ (LeRobotDatasets), policies/ (published versions)."""
    host: str = "127.0.0.1"
    """Address to bind."""
    port: int = 50051
    """Port to bind; 0 picks a free one (written to <root>/learner.json)."""
    tls: bool = True
    """Serve TLS with cert/key (robopolicy fleet certs writes them)."""
    cert: str | None = None
    """Server certificate (PEM); required when tls is true."""
    key: str | None = None
    """Server private key (PEM); required when tls is true."""
    tokens_file: str = MISSING
    """JSON {robot_id: token}: the robots allowed to connect."""
    max_message_bytes: int = 16 * 1024 * 1024
    """gRPC receive/send limit per message; a bigger message is refused with RESOURCE_EXHAUSTED."""
    max_workers: int = 128
    """Server threads; every robot holds two streams (episodes, weights)."""
    max_dim: int = 4096
    """Largest state / action dimension a robot may register."""
    max_image_side: int = 1024
    """Largest image height / width a robot may register."""
    shard_episodes: int = 200
    """Episodes per finalized LeRobotDataset shard."""
    shard_seconds: float = 30.0
    """Finalize the open shard at least this often (seconds)."""
    policy_piece_bytes: int = 1024 * 1024
    """Bytes per PolicyChunk message of a weight update."""
    torch_threads: int = 1
    """torch.set_num_threads of the learner: small MLPs train fastest on one thread (more spin on a busy CPU)."""
    train: FleetTrainConfig = field(default_factory=FleetTrainConfig)


@dataclass
class TeleopConfig:
    kind: str = "none"
    """none, scripted (Meta-World's expert takes over near failure) or lerobot (a LeRobot Teleoperator)."""
    takeover_after: float = 0.5
    """scripted: take over once this fraction of the episode's time limit passed without success."""
    lerobot: dict[str, Any] = field(default_factory=dict)
    """lerobot: the Teleoperator config (type and fields), passed to lerobot's make_teleoperator_from_config."""


@dataclass
class RobotConfig:
    robot_id: str = MISSING
    """This robot's id (must have a token in the learner's tokens_file)."""
    learner: str = "127.0.0.1:50051"
    """host:port of the learner."""
    token: str | None = None
    """The robot's token; or token_file."""
    token_file: str | None = None
    """JSON {robot_id: token} (e.g. the tokens.json of robopolicy fleet certs); the robot reads its own entry."""
    ca: str | None = None
    """CA certificate (PEM) for TLS; None: plaintext (only for a learner with tls=false)."""
    spool: str = MISSING
    """Folder of the on-disk spool (kept across restarts)."""
    backend: str = "sim"
    """sim (an envs id) or lerobot (a LeRobot Robot: lerobot_robot.type=..., see fleet.lerobot_robot)."""
    env_id: str = "envs.metaworld:robopolicy/MetaWorld-v3"
    """sim: gymnasium id."""
    env_kwargs: dict[str, Any] = field(default_factory=lambda: {"task": "reach-v3"})
    """sim: gymnasium.make keyword arguments."""
    max_episode_steps: int = 200
    """sim: time limit."""
    task: str | None = None
    """Instruction stored with every frame; None: the env's (Meta-World) or the env id."""
    episodes: int = 0
    """Episodes to run (0: until stopped)."""
    control_hz: float = 0.0
    """Fixed control rate; 0 runs as fast as the sim allows."""
    chunk_steps: int = 256
    """Control steps per uploaded chunk."""
    execute: int | None = None
    """Actions of each predicted chunk run before the next policy call, the first n of H (the policy's action
    horizon: run a policy fine-tuned with env.execute=n with the same n); None runs all H."""
    deterministic: bool = False
    """Act with the policy's mean / mode instead of sampling."""
    torch_threads: int = 1
    """torch.set_num_threads of the robot process (inference of one observation at a time)."""
    seed: int = 0
    """Env seed of the first episode (episode i uses seed + i)."""
    max_message_bytes: int = 16 * 1024 * 1024
    """Must not exceed the learner's."""
    teleop: TeleopConfig = field(default_factory=TeleopConfig)
    lerobot_robot: dict[str, Any] = field(default_factory=dict)
    """lerobot: the Robot config (type and fields) for lerobot's make_robot_from_config."""
    lerobot_imports: list[str] = field(default_factory=list)
    """lerobot: modules imported first so that third-party Robot classes register (fleet.lerobot_robot)."""
    lerobot_cameras: list[str] = field(default_factory=list)
    """lerobot: camera features streamed as observation.images.<cam>, e.g. [wrist, front]; [all]: every camera."""
    lerobot_image_size: int = 84
    """lerobot: S of the (3, S, S) frames the requested cameras are resized to."""
    image_encoding: str = "jpeg"
    """Wire encoding of camera frames: jpeg (lossy, quality 90, small) or png (lossless)."""


@dataclass
class DemoConfig:
    robots: int = 4
    """Simulated robots (N)."""
    root: str = "runs/fleet-demo"
    """Folder for certs, store, spools."""
    seconds: float = 0.0
    """Stop after this long (0: until Ctrl-C)."""
    env_kwargs: dict[str, Any] = field(default_factory=lambda: {"task": "reach-v3"})
    """Meta-World task of every robot."""
    teleop: str = "none"
    """none or scripted."""
    robot_overrides: list[str] = field(default_factory=list)
    """Extra ``key=value`` overrides for every robot, e.g. [teleop.takeover_after=0.3, max_episode_steps=150]."""
    learner: LearnerConfig = field(default_factory=LearnerConfig)


def register_fleet_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="fleet_learner_schema", node=LearnerConfig)
    cs.store(name="fleet_robot_schema", node=RobotConfig)
    cs.store(name="fleet_demo_schema", node=DemoConfig)
