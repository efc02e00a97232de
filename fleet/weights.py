"""Versioned policy weights: published by the learner, streamed in pieces, checked and loaded by robots.

    pub = WeightPublisher(root / "policies")
    v = pub.publish(policy)                 safetensors bytes + config.json, sha256, kept on disk (restart-safe)
    for msg in pub.pieces(v): ...           PolicyChunk messages of <= piece_bytes
    asm = PolicyAssembler(); policy = asm.add(msg)  -> Policy once the last piece arrived and the sha256 matched

A robot refuses a version whose bytes do not hash to the announced sha256, or whose tensors do not fit the config
(``WeightsError``), and keeps its last good policy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from fleet.proto import fleet_pb2 as pb
from robopolicy.policy import FORMAT_VERSION, Policy, PolicyConfig, load_state_checked

PIECE_BYTES = 1 << 20


class WeightsError(ValueError):
    """A policy update that must not be loaded (bad checksum, truncated, shapes that do not fit)."""


@dataclass
class Published:
    version: int
    blob: bytes
    sha256: str
    config_json: str
    published_at: float


def policy_blob(policy: Policy) -> tuple[bytes, str]:
    """(safetensors bytes of the state dict, config.json text)."""
    state = {k: v.detach().contiguous().cpu() for k, v in policy.state_dict().items()}
    cfg = json.dumps(asdict(policy.config) | {"format_version": FORMAT_VERSION})
    return st_save(state), cfg


class WeightPublisher:
    """Keeps the latest ``keep`` versions in memory and every version's files under ``root/v<version>/``."""

    def __init__(self, root: str | Path, keep: int = 4):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.versions: dict[int, Published] = {}
        self.cond = threading.Condition()
        for d in sorted(self.root.glob("v*"), key=lambda p: int(p.name[1:]))[-keep:]:
            blob = (d / "model.safetensors").read_bytes()
            meta = json.loads((d / "published.json").read_text())
            self.versions[int(d.name[1:])] = Published(int(d.name[1:]), blob, hashlib.sha256(blob).hexdigest(),
                                                       (d / "config.json").read_text(), meta["published_at"])

    @property
    def latest(self) -> int:
        return max(self.versions, default=-1)

    def publish(self, policy: Policy, version: int | None = None) -> int:
        blob, cfg = policy_blob(policy)
        return self.publish_blob(blob, cfg, version)

    def publish_blob(self, blob: bytes, config_json: str, version: int | None = None) -> int:
        with self.cond:
            v = self.latest + 1 if version is None else version
            pub = Published(v, blob, hashlib.sha256(blob).hexdigest(), config_json, time.time())
            d = self.root / f"v{v}"
            d.mkdir(parents=True, exist_ok=True)
            (d / "model.safetensors").write_bytes(blob)
            (d / "config.json").write_text(config_json)
            (d / "published.json").write_text(json.dumps({"published_at": pub.published_at, "sha256": pub.sha256}))
            self.versions[v] = pub
            for old in sorted(self.versions)[:-self.keep]:
                del self.versions[old]
            self.cond.notify_all()
        return v

    def wait_newer(self, have: int, timeout: float) -> int | None:
        """The latest version if it is newer than ``have`` (waiting up to ``timeout`` s), else None."""
        with self.cond:
            self.cond.wait_for(lambda: self.latest > have, timeout=timeout)
            return self.latest if self.latest > have else None

    def pieces(self, version: int, piece_bytes: int = PIECE_BYTES):
        pub = self.versions.get(version)
        if pub is None:
            raise KeyError(version)
        yield from published_pieces(pub, piece_bytes)


def published_pieces(pub: Published, piece_bytes: int = PIECE_BYTES):
    n = len(pub.blob)
    for off in range(0, max(n, 1), piece_bytes):
        first = off == 0
        yield pb.PolicyChunk(version=pub.version, offset=off, data=pub.blob[off:off + piece_bytes],
                             last=off + piece_bytes >= n, total_bytes=n, sha256=pub.sha256 if first else "",
                             config_json=pub.config_json if first else "", published_at=pub.published_at)


class PolicyAssembler:
    """Collects the pieces of one version; ``add`` returns (version, Policy, published_at) after the last piece."""

    def __init__(self, max_bytes: int = 1 << 30):
        self.max_bytes = max_bytes
        self._reset()

    def _reset(self) -> None:
        self.version, self.buf, self.sha, self.cfg, self.total = -1, bytearray(), "", "", 0

    def add(self, msg: pb.PolicyChunk) -> tuple[int, Policy, float] | None:
        if msg.offset == 0:
            self._reset()
            self.version, self.sha, self.cfg, self.total = msg.version, msg.sha256, msg.config_json, msg.total_bytes
            if self.total > self.max_bytes:
                raise WeightsError(f"version {msg.version}: {self.total} bytes exceeds the limit {self.max_bytes}")
        elif msg.version != self.version or msg.offset != len(self.buf):
            v = self.version
            self._reset()
            raise WeightsError(f"version {msg.version}: piece at offset {msg.offset} out of order "
                               f"(have version {v}, {len(self.buf)} bytes)")
        self.buf += msg.data
        if not msg.last:
            return None
        blob, version, sha, cfg, total = bytes(self.buf), self.version, self.sha, self.cfg, self.total
        self._reset()
        return version, load_policy_blob(version, blob, sha, cfg, total), msg.published_at


_INIT_FNS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "orthogonal_",
             "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_")


_REAL_INIT = {name: getattr(torch.nn.init, name) for name in _INIT_FNS}  # captured at import: restore these
_init_lock = threading.Lock()
_init_skippers = 0  # threads inside skip_weight_init


@contextlib.contextmanager
def skip_weight_init():
    """Skip torch.nn.init while building a module whose every tensor is loaded right after (load_state_checked
    rejects a missing key): the orthogonal init of a 5M-parameter policy alone costs ~0.5 s of a weight swap.
    Patches module attributes, so only use it where no other thread builds modules meanwhile (the robot's
    policy thread). Several robot clients in one process may load at once: the patch is counted and the real
    functions come back when the last one leaves (saving "the current ones" per thread could restore another
    thread's no-ops for good)."""
    global _init_skippers
    with _init_lock:
        if _init_skippers == 0:
            for name in _INIT_FNS:
                setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
        _init_skippers += 1
    try:
        yield
    finally:
        with _init_lock:
            _init_skippers -= 1
            if _init_skippers == 0:
                for name, fn in _REAL_INIT.items():
                    setattr(torch.nn.init, name, fn)


def load_policy_blob(version: int, blob: bytes, sha256: str, config_json: str, total: int | None = None) -> Policy:
    if total is not None and len(blob) != total:
        raise WeightsError(f"version {version}: got {len(blob)} bytes, announced {total}")
    got = hashlib.sha256(blob).hexdigest()
    if got != sha256:
        raise WeightsError(f"version {version}: sha256 {got[:12]}... does not match the announced {sha256[:12]}...; "
                           "refusing these weights")
    try:
        with skip_weight_init():
            policy = Policy(PolicyConfig.from_dict(json.loads(config_json)))
        load_state_checked(policy, st_load(blob), Path(f"<fleet policy v{version}>"))
    except Exception as err:
        raise WeightsError(f"version {version}: cannot load: {err}") from err
    return policy.eval()
