"""`robopolicy fleet robot`: a fixed-rate control loop that streams its episodes to the learner.

    control thread (control_hz)          inference thread                  FleetClient threads
    ---------------------------          ----------------                  -------------------
    obs --request(obs)--------------->   swap in a newer policy if any     upload spool, receive weights
    wait for the chunk (B=1, H, A)  <--  policy.act(obs) -> chunk
    execute n <= H actions at the rate;  (weights change only here,
    teleoperator may override each       i.e. between chunks)
    record step -> episode buffer -> every chunk_steps steps: client.submit (spooled, fsynced) -> learner

Policy steps. Each request returns one action chunk (H, A) with its trace and per-decision log-probs (S,). The
first control step of the chunk records them with the planned chunk and ``chunk_step`` 0; the next steps record
chunk_step 1, 2, ... and zeros there. The chunk stops early at the episode's end (the learner counts the rows
that ran, as ``ActionChunk`` reports ``chunk_steps``). With ``execute`` = n < H (the policy's action horizon, as
``env.execute`` in training) only the first n actions run before the next request; the planned chunk still travels
whole, and the learner reads the n rows as it reads a chunk cut by the episode's end.

Reset seeds. When the learner hands out seeds (``train.algo=grpo``: RegisterReply.group_size > 0) a simulated
robot resets each episode with the seed it gets from ``EpisodeSeed`` and records it with the episode, so the
learner can group episodes that started from the same state. A robot that cannot reset to a seed (hardware,
``seeded_resets=False``) or cannot reach the learner at reset time uses its own seed and records none.

Interventions: a teleoperator object with ``action(obs, step) -> np.ndarray | None`` (None: the policy acts). The
scripted one (Meta-World's expert) takes over once ``takeover_after`` of the time limit passed without success and
keeps control to the end of the episode; the executed action is the teleoperator's and its step is marked.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from envs.chunk import check_execute
from fleet.client import FleetClient
from fleet.codec import EpisodePiece
from fleet.proto import fleet_pb2 as pb
from robopolicy.policy import Policy
from robopolicy.types import OBS_IMAGES, OBS_STATE

log = logging.getLogger(__name__)


@dataclass
class ChunkResult:
    actions: np.ndarray  # (H, A)
    trace: np.ndarray    # (trace_dim,) flattened trace of this policy step
    logp: np.ndarray     # (S,) log-prob of each inner decision
    version: int


class InferenceWorker:
    """Runs the policy on its own thread; ``set_policy`` stages new weights, swapped in before the next chunk."""

    def __init__(self, policy: Policy, version: int, deterministic: bool = False):
        self.policy, self.version, self.deterministic = policy, version, deterministic
        self._staged: tuple[int, Policy] | None = None
        self._lock = threading.Lock()
        self._requests: queue.Queue = queue.Queue(maxsize=1)
        self._results: queue.Queue = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    def set_policy(self, version: int, policy: Policy, published_at: float = 0.0) -> None:
        with self._lock:
            if version > self.version:
                self._staged = (version, policy)

    def request(self, obs: np.ndarray) -> None:
        self._requests.put(obs)

    def result(self, timeout: float = 30.0) -> ChunkResult:
        return self._results.get(timeout=timeout)

    def close(self) -> None:
        self._requests.put(None)

    @torch.inference_mode()
    def _run(self) -> None:
        while True:
            obs = self._requests.get()
            if obs is None:
                return
            with self._lock:  # between chunks: the only place weights change
                if self._staged is not None:
                    self.version, self.policy = self._staged
                    self._staged = None
            sample = self.policy.act(batch_obs(obs), deterministic=self.deterministic)
            self._results.put(ChunkResult(sample.actions[0].numpy(), sample.trace[0].reshape(-1).float().numpy(),
                                          sample.logp[0].float().numpy(), self.version))


def batch_obs(obs: np.ndarray | dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """One env observation -> the policy's obs with B=1: a state array, or a Dict of observation.state (D,) and
    observation.images.<cam> (3, H, W) uint8 (kept uint8: the image encoder scales it)."""
    if not isinstance(obs, dict):
        return {OBS_STATE: torch.as_tensor(obs, dtype=torch.float32)[None]}
    return {k: torch.as_tensor(v if k.startswith(f"{OBS_IMAGES}.") else np.asarray(v, np.float32))[None]
            for k, v in obs.items()}


def split_obs(obs: np.ndarray | dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(state (D,), {camera: (H, W, 3) uint8}): the wire sends frames HWC, as they are encoded and stored."""
    if not isinstance(obs, dict):
        return obs, {}
    prefix = f"{OBS_IMAGES}."
    return obs[OBS_STATE], {k[len(prefix):]: v.transpose(1, 2, 0) for k, v in obs.items() if k.startswith(prefix)}


class ScriptedTeleop:
    """Meta-World's scripted expert as a simulated teleoperator that takes over near failure."""

    def __init__(self, task: str, max_steps: int, takeover_after: float):
        from envs.metaworld import scripted_expert

        self.expert, self.start = scripted_expert(task), int(takeover_after * max_steps)
        self.active = False

    def reset(self) -> None:
        self.active = False

    def action(self, obs: np.ndarray, step: int, succeeded: bool) -> np.ndarray | None:
        """The teleoperator's action, or None while the policy is in control."""
        if not self.active and (step < self.start or succeeded):
            return None
        self.active = True  # once it took over it keeps control to the end of the episode
        return np.clip(np.asarray(self.expert.get_action(obs), np.float32), -1.0, 1.0)


@dataclass
class EpisodeBuffer:
    """Steps of the current episode not yet submitted; ``take()`` returns them as an EpisodePiece."""

    trace_dim: int
    num_decisions: int = 1  # S
    chunk: int = 1          # H; > 1 records chunk_step and chunk_action
    rows: dict[str, list] = field(default_factory=lambda: {k: [] for k in (
        "state", "action", "reward", "done", "intervention", "policy_version", "timestamp", "success", "logp",
        "trace", "chunk_step", "chunk_action", "images")})

    def add(self, **step) -> None:
        for k, v in step.items():
            self.rows[k].append(v)

    def __len__(self) -> int:
        return len(self.rows["state"])

    def take(self) -> EpisodePiece:
        r = self.rows
        piece = EpisodePiece(
            state=np.asarray(r["state"], np.float32), action=np.asarray(r["action"], np.float32),
            reward=np.asarray(r["reward"], np.float32), done=np.asarray(r["done"], bool),
            intervention=np.asarray(r["intervention"], bool), policy_version=np.asarray(r["policy_version"], np.int64),
            timestamp=np.asarray(r["timestamp"], np.float64), success=np.asarray(r["success"], bool),
            logp=np.asarray(r["logp"], np.float32).reshape(len(self), self.num_decisions),
            trace=np.asarray(r["trace"], np.float32).reshape(len(self), self.trace_dim),
            images={c: np.stack([f[c] for f in r["images"]]) for c in (r["images"][0] if r["images"] else {})})
        if self.chunk > 1:
            piece.chunk_step = np.asarray(r["chunk_step"], np.uint16)
            piece.chunk_action = np.asarray(r["chunk_action"], np.float32).reshape(len(self), -1)
        for v in r.values():
            v.clear()
        return piece


def sim_spec(robot_id: str, env: gym.Env, task: str, trace_dim: int, fps: int, chunk: int = 1,
             num_decisions: int = 1, image_encoding: str = "jpeg") -> pb.RobotSpec:
    """The registration of a robot whose env gives a state Box or a Dict of observation.state and
    observation.images.<cam> (3, H, W) uint8: each camera is advertised as H x W in ``image_encoding``, so the
    learner checks every frame's size."""
    space = env.observation_space
    state_space = space[OBS_STATE] if isinstance(space, gym.spaces.Dict) else space
    act = env.action_space
    embodiment = getattr(env, "embodiment", None) or f"sim:{env.spec.id if env.spec else 'env'}"  # lerobot:<name>
    spec = pb.RobotSpec(robot_id=robot_id, embodiment=embodiment,
                        state_dim=int(np.prod(state_space.shape)), action_dim=int(np.prod(act.shape)),
                        software_version=_version(), task=task, fps=fps, trace_dim=trace_dim, chunk=chunk,
                        num_decisions=num_decisions)
    for key, sub in (space.spaces.items() if isinstance(space, gym.spaces.Dict) else ()):
        if key.startswith(f"{OBS_IMAGES}."):
            _, h, w = sub.shape
            spec.cameras.add(name=key[len(OBS_IMAGES) + 1:], height=h, width=w, encoding=image_encoding)
    if np.all(np.isfinite(act.low)) and np.all(np.isfinite(act.high)):
        spec.action_low.extend(act.low.astype(float).tolist())
        spec.action_high.extend(act.high.astype(float).tolist())
    return spec


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"robopolicy {version('robopolicy')}"
    except PackageNotFoundError:
        return "robopolicy dev"


class RobotLoop:
    """One simulated robot: env + inference worker + fleet client. ``run(episodes)`` until done or ``stop()``.
    ``execute``: actions run per chunk, its first n (1 <= n <= H); None runs all H."""

    def __init__(self, env: gym.Env, client: FleetClient, worker: InferenceWorker, trace_dim: int,
                 chunk_steps: int = 256, control_hz: float = 0.0, teleop: ScriptedTeleop | None = None,
                 seed: int = 0, seeded_resets: bool = True, execute: int | None = None):
        self.env, self.client, self.worker, self.teleop = env, client, worker, teleop
        self.seeded_resets = seeded_resets
        self.H, self.S = max(1, int(client.spec.chunk)), max(1, int(client.spec.num_decisions))
        self.execute = check_execute(execute, self.H)  # control steps per policy request
        self.trace_dim, self.chunk_steps, self.control_hz, self.seed = trace_dim, chunk_steps, control_hz, seed
        self._stop = threading.Event()
        self.episodes = 0
        self.successes: list[bool] = []
        self.late_ticks = 0  # control ticks that started after their deadline (inference or env too slow)

    def stop(self) -> None:
        self._stop.set()

    def run(self, episodes: int = 0) -> None:
        while not self._stop.is_set() and (episodes <= 0 or self.episodes < episodes):
            self.successes.append(self._episode(self.seed + self.episodes))
            self.episodes += 1

    def _episode(self, seed: int) -> bool:
        reset_seed = self.client.episode_seed() if self.seeded_resets else None
        obs, _ = self.env.reset(seed=seed if reset_seed is None else reset_seed)
        if self.teleop is not None:
            self.teleop.reset()
        episode_id, chunk_index = self.client.new_episode_id(), 0
        buf = EpisodeBuffer(self.trace_dim, self.S, self.H)
        no_trace, no_logp = np.zeros(self.trace_dim, np.float32), np.zeros(self.S, np.float32)
        no_chunk = np.zeros(self.H * self.client.spec.action_dim, np.float32)
        period = 1.0 / self.control_hz if self.control_hz > 0 else 0.0
        next_tick = time.monotonic()
        step, succeeded, done = 0, False, False
        while not done:
            self.worker.request(obs)
            chunk = self.worker.result()
            if chunk.actions.shape[0] != self.H or chunk.logp.shape != (self.S,):
                raise RuntimeError(f"policy returned a chunk {chunk.actions.shape} with logp {chunk.logp.shape}; "
                                   f"this robot registered chunk={self.H}, num_decisions={self.S}")
            for h in range(self.execute):
                if period:
                    now = time.monotonic()
                    if now > next_tick + period:
                        self.late_ticks += 1
                    time.sleep(max(0.0, next_tick - now))
                    next_tick = max(next_tick + period, time.monotonic() - period)
                state, images = split_obs(obs)
                human = self.teleop.action(state, step, succeeded) if self.teleop else None
                action = human if human is not None else chunk.actions[h]
                next_obs, reward, terminated, truncated, info = self.env.step(action)
                step_success = bool(info.get("success", False))
                succeeded |= step_success
                done = bool(terminated or truncated) or self._stop.is_set()
                first = h == 0  # the policy's sample is recorded even when the teleoperator overrides it
                executed = info.get("action_executed", action)  # a real robot may limit what it was sent
                buf.add(state=state, images=images,
                        action=np.clip(executed, self.env.action_space.low, self.env.action_space.high),
                        reward=float(reward), done=done, intervention=human is not None,
                        policy_version=chunk.version, timestamp=time.time(), success=step_success,
                        logp=chunk.logp if first else no_logp, trace=chunk.trace if first else no_trace,
                        chunk_step=h, chunk_action=chunk.actions.reshape(-1) if first else no_chunk)
                obs, step = next_obs, step + 1
                if done or len(buf) >= self.chunk_steps:
                    self.client.submit(episode_id, chunk_index, done, buf.take(), succeeded, reset_seed)
                    chunk_index += 1
                if done:
                    break
        return succeeded
