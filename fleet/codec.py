"""Episode pieces <-> wire messages, and the learner's validation of every field against the robot's spec.

    chunk = encode_chunk(spec, piece, session_id, episode_id, chunk_index, last)   robot side
    piece = decode_chunk(spec, chunk)                                              learner side, raises PayloadError

An ``EpisodePiece`` holds T consecutive control steps of one episode as numpy arrays:
    state (T, D) float32   action (T, A) float32   reward (T,) float32   done (T,) bool
    intervention (T,) bool  policy_version (T,) int64  timestamp (T,) float64  success (T,) bool
    logp (T, S) float32     trace (T, trace_dim) float32 (trace_dim may be 0)
    chunk_step (T,) uint16  chunk_action (T, H*A) float32                 (H > 1 only; None on the robot side: H = 1)
    images {camera: (T, H, W, 3) uint8}
A policy step executes one action chunk over up to H control steps; the row where it starts has chunk_step 0 and
carries the step's trace, its S per-decision log-probs and the planned chunk (the other rows carry zeros). With
H = 1 (spec.chunk 0 or 1) every row is a policy step and the chunk fields are not sent. S = max(1,
spec.num_decisions): a robot that registers no num_decisions sends one summed log-prob per step (the H = 1
Gaussian wire of the first version).
Arrays travel as raw little-endian bytes whose length is checked against T and the registered spec before they are
read, so a wrong-shaped payload is rejected with the field's name and the expected shape; images travel PNG/JPEG
encoded (OpenCV) and are decoded to check their size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from fleet.proto import fleet_pb2 as pb

ENCODINGS = ("png", "jpeg")
MAX_STEPS_PER_CHUNK = 100_000


class PayloadError(ValueError):
    """A message that does not match the robot's registered spec; the message names the field."""


@dataclass
class EpisodePiece:
    state: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    done: np.ndarray
    intervention: np.ndarray
    policy_version: np.ndarray
    timestamp: np.ndarray
    success: np.ndarray
    logp: np.ndarray
    trace: np.ndarray
    images: dict[str, np.ndarray] = field(default_factory=dict)
    chunk_step: np.ndarray | None = None
    chunk_action: np.ndarray | None = None

    @property
    def num_steps(self) -> int:
        return int(self.state.shape[0])


def chunk_len(spec: pb.RobotSpec) -> int:
    """H of the robot's policy steps (1 when it registered none)."""
    return max(1, int(spec.chunk))


def num_decisions(spec: pb.RobotSpec) -> int:
    """S of the robot's log-probs per policy step (1 when it registered none)."""
    return max(1, int(spec.num_decisions))


# field -> (numpy dtype, per-step width from the spec or None for a scalar per step)
_VECTORS: dict[str, tuple[str, Callable[[pb.RobotSpec], int] | None]] = {
    "state": ("<f4", lambda s: int(s.state_dim)),
    "action": ("<f4", lambda s: int(s.action_dim)),
    "reward": ("<f4", None),
    "done": ("u1", None),
    "intervention": ("u1", None),
    "policy_version": ("<i8", None),
    "timestamp": ("<f8", None),
    "success": ("u1", None),
    "logp": ("<f4", num_decisions),
    "trace": ("<f4", lambda s: int(s.trace_dim)),
    "chunk_step": ("<u2", None),
    "chunk_action": ("<f4", lambda s: chunk_len(s) * int(s.action_dim)),
}
_FINITE = ("state", "action", "reward", "logp", "trace", "timestamp", "chunk_action")
_BOOL = ("done", "intervention", "success")
_OPTIONAL = ("logp", "trace")  # sent only by robots running a learner policy
_CHUNKED = ("chunk_step", "chunk_action")  # sent (and required) only when H > 1


def encode_image(img: np.ndarray, encoding: str, jpeg_quality: int = 90) -> bytes:
    """(H, W, 3) uint8 RGB -> PNG / JPEG bytes."""
    bgr = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if encoding == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, buf = cv2.imencode(".jpg" if encoding == "jpeg" else ".png", bgr, params)
    if not ok:
        raise ValueError(f"cannot encode a {img.shape} image as {encoding}")
    return buf.tobytes()


def decode_image(data: bytes) -> np.ndarray | None:
    """PNG / JPEG bytes -> (H, W, 3) uint8 RGB, or None if they do not decode."""
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_chunk(spec: pb.RobotSpec, piece: EpisodePiece, session_id: str, episode_id: str, chunk_index: int,
                 last: bool, episode_success: bool = False, reset_seed: int | None = None) -> pb.EpisodeChunk:
    msg = pb.EpisodeChunk(session_id=session_id, robot_id=spec.robot_id, episode_id=episode_id,
                          chunk_index=chunk_index, last=last, num_steps=piece.num_steps,
                          success_episode=bool(last and (episode_success or piece.success.any())))
    if reset_seed is not None:
        msg.reset_seed = int(reset_seed)
    for name, (dtype, _) in _VECTORS.items():
        value = getattr(piece, name)
        if value is not None:
            setattr(msg, name, np.ascontiguousarray(value, dtype=dtype).tobytes())
    for t in range(piece.num_steps):
        for cam in spec.cameras:
            msg.images.add(camera=cam.name, data=encode_image(piece.images[cam.name][t], cam.encoding))
    return msg


def decode_chunk(spec: pb.RobotSpec, msg: pb.EpisodeChunk) -> EpisodePiece:
    """Check every field of ``msg`` against ``spec`` and return its arrays; PayloadError names what is wrong."""
    T = int(msg.num_steps)
    if not 1 <= T <= MAX_STEPS_PER_CHUNK:
        raise PayloadError(f"num_steps: {T}, expected 1..{MAX_STEPS_PER_CHUNK}")
    if not msg.episode_id or len(msg.episode_id) > 128:
        raise PayloadError(f"episode_id: {msg.episode_id[:40]!r} must be 1..128 characters")
    arrays: dict[str, np.ndarray] = {}
    H = chunk_len(spec)
    for name, (dtype, width_of) in _VECTORS.items():
        width = width_of(spec) if width_of else None
        shape = (T, width) if width is not None else (T,)
        raw = getattr(msg, name)
        if name in _CHUNKED and H > 1 and len(raw) == 0:
            raise PayloadError(f"{name}: required when the robot registered chunk={H} (expected shape {shape})")
        if (name in _OPTIONAL or name in _CHUNKED) and len(raw) == 0:
            arrays[name] = np.zeros(shape, dtype=dtype)  # H = 1: every step starts a chunk of its own action
            continue
        itemsize = np.dtype(dtype).itemsize
        if len(raw) != int(np.prod(shape)) * itemsize:
            got = len(raw) / itemsize / (width or 1) if width != 0 else len(raw)
            raise PayloadError(f"{name}: {len(raw)} bytes, expected shape {shape} {np.dtype(dtype).name} "
                               f"({int(np.prod(shape)) * itemsize} bytes; got {got:g} steps)")
        arr = np.frombuffer(raw, dtype=dtype).reshape(shape)
        if name in _FINITE and not np.isfinite(arr).all():
            bad = np.argwhere(~np.isfinite(arr))[0].tolist()
            raise PayloadError(f"{name}: non-finite value (NaN/Inf) at index {bad}")
        if name in _BOOL and (arr > 1).any():
            raise PayloadError(f"{name}: values must be 0 or 1")
        arrays[name] = arr
    _check_action_bounds(spec, arrays["action"])
    _check_chunk_steps(arrays["chunk_step"], H)
    images = _decode_images(spec, msg, T)
    return EpisodePiece(**{k: (v.astype(bool) if k in _BOOL else v) for k, v in arrays.items()}, images=images)


def _check_chunk_steps(step: np.ndarray, H: int) -> None:
    """Each row's index within its policy chunk: < H, and 0 (a new chunk) or the previous row's + 1."""
    if (step >= H).any():
        t = int(np.argmax(step >= H))
        raise PayloadError(f"chunk_step: {int(step[t])} at step {t}, expected < chunk={H}")
    bad = (step[1:] != 0) & (step[1:] != step[:-1] + 1)
    if bad.any():
        t = int(np.argmax(bad)) + 1
        raise PayloadError(f"chunk_step: {int(step[t])} at step {t} after {int(step[t - 1])}, expected 0 or "
                           f"{int(step[t - 1]) + 1}")


def _check_action_bounds(spec: pb.RobotSpec, action: np.ndarray) -> None:
    if not spec.action_low:
        return
    low, high = np.asarray(spec.action_low, np.float32), np.asarray(spec.action_high, np.float32)
    tol = 1e-4 * np.maximum(1.0, high - low)
    bad = (action < low - tol) | (action > high + tol)
    if bad.any():
        t, a = np.argwhere(bad)[0].tolist()
        raise PayloadError(f"action: value {action[t, a]:.4g} at step {t}, dim {a} outside the registered bounds "
                           f"[{low[a]:.4g}, {high[a]:.4g}]")


def _decode_images(spec: pb.RobotSpec, msg: pb.EpisodeChunk, T: int) -> dict[str, np.ndarray]:
    cams = list(spec.cameras)
    if len(msg.images) != T * len(cams):
        raise PayloadError(f"images: {len(msg.images)} frames, expected {T} steps x {len(cams)} cameras "
                           f"{[c.name for c in cams]}")
    out = {c.name: np.empty((T, c.height, c.width, 3), np.uint8) for c in cams}
    for i, frame in enumerate(msg.images):
        t, cam = divmod(i, len(cams))
        want = cams[cam]
        if frame.camera != want.name:
            raise PayloadError(f"images[{i}].camera: {frame.camera!r}, expected {want.name!r} (step {t})")
        img = decode_image(frame.data)
        if img is None:
            raise PayloadError(f"observation.images.{want.name}: step {t} is not a decodable {want.encoding} image")
        if img.shape != (want.height, want.width, 3):
            raise PayloadError(f"observation.images.{want.name}: step {t} has shape {img.shape}, "
                               f"expected {(int(want.height), int(want.width), 3)}")
        out[want.name][t] = img
    return out


def check_spec(spec: pb.RobotSpec, limits: dict[str, int]) -> None:
    """Reject a registration the store cannot hold; ``limits`` bounds dims and image sizes."""
    if not spec.robot_id or len(spec.robot_id) > 64 or not spec.robot_id.replace("-", "").replace("_", "").isalnum():
        raise PayloadError(f"spec.robot_id: {spec.robot_id!r} must be 1..64 letters, digits, '-' or '_'")
    for name in ("state_dim", "action_dim"):
        v = int(getattr(spec, name))
        if not 1 <= v <= limits["max_dim"]:
            raise PayloadError(f"spec.{name}: {v}, expected 1..{limits['max_dim']}")
    if spec.trace_dim > limits["max_dim"] * 64:
        raise PayloadError(f"spec.trace_dim: {spec.trace_dim}, expected <= {limits['max_dim'] * 64}")
    for name in ("chunk", "num_decisions"):
        if int(getattr(spec, name)) > limits["max_dim"]:
            raise PayloadError(f"spec.{name}: {getattr(spec, name)}, expected <= {limits['max_dim']}")
    if spec.action_low and (len(spec.action_low) != spec.action_dim or len(spec.action_high) != spec.action_dim):
        raise PayloadError(f"spec.action_low/high: lengths {len(spec.action_low)}/{len(spec.action_high)}, "
                           f"expected action_dim={spec.action_dim}")
    names = [c.name for c in spec.cameras]
    if len(set(names)) != len(names):
        raise PayloadError(f"spec.cameras: duplicate names {names}")
    for c in spec.cameras:
        if c.encoding not in ENCODINGS:
            raise PayloadError(f"spec.cameras[{c.name}].encoding: {c.encoding!r}, expected one of {ENCODINGS}")
        if not (1 <= c.height <= limits["max_image_side"] and 1 <= c.width <= limits["max_image_side"]):
            raise PayloadError(f"spec.cameras[{c.name}]: {c.height}x{c.width}, sides must be 1..{limits['max_image_side']}")
        if not c.name.isidentifier():
            raise PayloadError(f"spec.cameras: name {c.name!r} must be an identifier")
