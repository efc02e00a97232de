"""The robot side of the wire: register, upload spooled chunks, receive weights, report health.

    client = FleetClient("127.0.0.1:50051", spec, token, spool_dir, ca="certs/ca.pem", on_policy=swap)
    client.start()
    client.submit(episode_id, chunk_index, last, piece)   spooled (fsynced) now, uploaded when the learner is reachable
    client.stop(drain_s=10)                                 waits for the spool to empty, then closes

Three threads, each reconnecting with backoff on its own: the uploader (one client-streamed call at a time, up to
``window`` chunks in flight, each spool file deleted only when its ack names it), the policy subscriber (verifies
every version's sha256 before handing it to ``on_policy``; a bad one is counted and skipped, the last good policy
stays) and a health heartbeat. A learner restart forgets sessions: the next call answers FAILED_PRECONDITION and
the client registers again.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path

import grpc

from fleet.codec import EpisodePiece, encode_chunk
from fleet.proto import fleet_pb2 as pb
from fleet.proto import fleet_pb2_grpc as pb_grpc
from fleet.security import call_metadata, channel_credentials
from fleet.spool import Spool
from fleet.weights import PolicyAssembler, WeightsError

log = logging.getLogger(__name__)

# A rejected payload will be rejected again: keep it aside instead of resending it forever.
_REJECTED = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.PERMISSION_DENIED)


def make_channel(address: str, ca: str | None, max_message_bytes: int) -> grpc.Channel:
    opts = [("grpc.max_send_message_length", max_message_bytes), ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 1000)]
    if ca:
        return grpc.secure_channel(address, channel_credentials(ca), options=opts)
    return grpc.insecure_channel(address, options=opts)


class FleetClient:
    def __init__(self, address: str, spec: pb.RobotSpec, token: str, spool_dir: str | Path, ca: str | None = None,
                 max_message_bytes: int = 16 << 20, window: int = 32,
                 on_policy: Callable[[int, object, float], None] | None = None, have_version: int = -1,
                 subscribe: bool = True, health_every_s: float = 1.0):
        self.spec, self.window, self.on_policy = spec, window, on_policy
        self.metadata = call_metadata(spec.robot_id, token)
        self.max_message_bytes = max_message_bytes
        self.channel = make_channel(address, ca, max_message_bytes)
        self.stub = pb_grpc.LearnerStub(self.channel)
        self.spool = Spool(spool_dir)
        self.subscribe, self.health_every_s = subscribe, health_every_s
        self.session: str | None = None
        self.group_size = 0  # > 0 once a learner that hands out reset seeds answered Register
        self._session_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # status, read by the robot loop, tests and the demo
        self.policy_version = have_version
        self.held_since = time.time()
        self.acked = self.duplicates = self.weights_rejected = 0
        self.rejected: list[str] = []
        self.acked_keys: list[tuple[str, int]] = []  # (episode_id, chunk_index) in ack order
        self.last_error = ""
        self.last_weights_error = ""
        self.connected = False

    # --- robot-facing API -----------------------------------------------------------------
    def start(self) -> FleetClient:
        targets = [self._upload_loop] + ([self._policy_loop] if self.subscribe else []) + [self._health_loop]
        for fn in targets:
            t = threading.Thread(target=fn, name=f"{self.spec.robot_id}-{fn.__name__}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def submit(self, episode_id: str, chunk_index: int, last: bool, piece: EpisodePiece,
               episode_success: bool = False, reset_seed: int | None = None) -> int:
        """Encode and spool one chunk (durable on return); raises ValueError if it exceeds the message limit."""
        msg = encode_chunk(self.spec, piece, "", episode_id, chunk_index, last, episode_success, reset_seed)
        size = msg.ByteSize() + 64  # + the session id set at send time
        if size > self.max_message_bytes:
            raise ValueError(f"chunk of {piece.num_steps} steps is {size} bytes > max_message_bytes "
                             f"{self.max_message_bytes}; send fewer steps per chunk")
        return self.spool.put(msg)

    def episode_seed(self, timeout: float = 2.0) -> int | None:
        """The learner's reset seed for the next episode (GRPO groups), or None when it hands out none (its
        registration said group_size 0) or cannot be reached within ``timeout`` (the robot then seeds locally)."""
        if self.group_size <= 0:
            return None
        try:
            session = self._ensure_session(timeout)
            return int(self.stub.EpisodeSeed(pb.SeedRequest(session_id=session), metadata=self.metadata,
                                             timeout=timeout).seed)
        except grpc.RpcError as err:
            self._on_rpc_error(err, "seed")
            return None

    @staticmethod
    def new_episode_id() -> str:
        return uuid.uuid4().hex

    def drained(self) -> bool:
        return len(self.spool) == 0

    def stop(self, drain_s: float = 0.0) -> None:
        deadline = time.monotonic() + drain_s
        while drain_s > 0 and not self.drained() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        with self.spool.cond:
            self.spool.cond.notify_all()
        self.channel.close()
        for t in self._threads:
            t.join(timeout=5)

    def fetch_policy(self, version: int = -1, timeout: float = 30.0):
        """(version, Policy, published_at) of ``version`` (-1: latest), checked like a streamed update."""
        self._ensure_session(timeout)
        asm = PolicyAssembler()
        for msg in self.stub.FetchPolicy(pb.FetchRequest(session_id=self.session, version=version),
                                         metadata=self.metadata, timeout=timeout):
            out = asm.add(msg)
            if out is not None:
                return out
        raise WeightsError(f"version {version}: stream ended before the last piece")

    # --- threads --------------------------------------------------------------------------
    def _ensure_session(self, timeout: float = 10.0) -> str:
        with self._session_lock:
            if self.session is None:
                reply = self.stub.Register(pb.RegisterRequest(spec=self.spec), metadata=self.metadata,
                                           timeout=timeout, wait_for_ready=True)
                self.session = reply.session_id
                self.group_size = int(reply.group_size)
                log.info("%s registered, session %s", self.spec.robot_id, self.session[:8])
            return self.session

    def _on_rpc_error(self, err: grpc.RpcError, where: str) -> None:
        if self._stop.is_set():  # our own stop() closed the channel
            return
        code = err.code()
        if code == grpc.StatusCode.FAILED_PRECONDITION:  # the learner restarted and forgot the session
            with self._session_lock:
                self.session = None
        self.last_error = f"{where}: {code.name}: {err.details()}"
        self.connected = False

    def _backoff(self, attempt: int) -> None:
        self._stop.wait(min(2.0, 0.1 * 2 ** min(attempt, 5)))

    def _upload_loop(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            inflight: deque[tuple[int, str, int]] = deque()
            try:
                session = self._ensure_session()
                self.connected = True
                for ack in self.stub.StreamEpisodes(self._requests(session, inflight), metadata=self.metadata):
                    seq, eid, idx = inflight.popleft()
                    if (ack.episode_id, ack.chunk_index) != (eid, idx):
                        raise RuntimeError(f"ack for {ack.episode_id}/{ack.chunk_index}, expected {eid}/{idx}")
                    self.spool.ack(seq)
                    self.acked_keys.append((eid, idx))
                    self.acked += 1
                    self.duplicates += int(ack.duplicate)
                    attempt = 0
                    with self.spool.cond:
                        self.spool.cond.notify_all()
            except grpc.RpcError as err:
                self._on_rpc_error(err, "upload")
                if err.code() in _REJECTED and inflight:
                    seq, eid, idx = inflight[0]  # the learner handles a stream in order: the oldest unacked one
                    self.spool.reject(seq)
                    self.rejected.append(f"{eid}/{idx}: {err.code().name}: {err.details()}")
                    log.error("%s: learner rejected %s/%d: %s", self.spec.robot_id, eid, idx, err.details())
                elif not self._stop.is_set():
                    attempt += 1
                    self._backoff(attempt)
            except ValueError:
                if self._stop.is_set():  # channel closed under us during stop()
                    return
                raise

    def _requests(self, session: str, inflight: deque):
        """Spooled chunks in order, then new ones as they are spooled; at most ``window`` unacked."""
        sent = -1
        while not self._stop.is_set():
            todo = self.spool.pending(after=sent)
            if not todo:
                self.spool.wait(0.2)
                continue
            for seq, path in todo:
                with self.spool.cond:
                    while len(inflight) >= self.window and not self._stop.is_set():
                        self.spool.cond.wait(0.2)
                if self._stop.is_set():
                    return
                try:
                    msg = pb.EpisodeChunk.FromString(path.read_bytes())
                except FileNotFoundError:  # acked meanwhile by an earlier stream
                    continue
                msg.session_id = session
                inflight.append((seq, msg.episode_id, msg.chunk_index))
                sent = seq
                yield msg

    def _policy_loop(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            asm = PolicyAssembler(max_bytes=1 << 31)
            try:
                session = self._ensure_session()
                req = pb.PolicyRequest(session_id=session, have_version=self.policy_version)
                for msg in self.stub.SubscribePolicy(req, metadata=self.metadata):
                    attempt = 0
                    try:
                        out = asm.add(msg)
                    except WeightsError as err:
                        self.weights_rejected += 1
                        self.last_weights_error = str(err)
                        log.error("%s: %s", self.spec.robot_id, err)
                        continue
                    if out is not None:
                        version, policy, published_at = out
                        if self.on_policy is not None:
                            self.on_policy(version, policy, published_at)
                        self.policy_version, self.held_since = version, time.time()
            except grpc.RpcError as err:
                self._on_rpc_error(err, "policy")
                attempt += 1
                self._backoff(attempt)
            except ValueError:
                if self._stop.is_set():
                    return
                raise

    def _health_loop(self) -> None:
        while not self._stop.wait(self.health_every_s):
            try:
                session = self._ensure_session(timeout=2.0)
                self.stub.Health(pb.HealthRequest(session_id=session, held_version=self.policy_version,
                                                  held_since=self.held_since, spooled_chunks=len(self.spool)),
                                 metadata=self.metadata, timeout=2.0)
            except grpc.RpcError as err:
                self._on_rpc_error(err, "health")
            except ValueError:
                return
