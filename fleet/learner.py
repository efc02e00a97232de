"""The learner's gRPC service: registration, durable episode ingest, weight streaming, health.

    server, service = start_learner_server(cfg, store, publisher, tokens)   serves until server.stop()

Per call: the token of the robot named in the metadata is checked (UNAUTHENTICATED otherwise); a message that
names another robot is refused (PERMISSION_DENIED); a payload that does not fit the robot's registered spec ends
only that robot's stream with INVALID_ARGUMENT and a message naming the field. gRPC itself refuses a message larger
than ``max_message_bytes`` (RESOURCE_EXHAUSTED). Each stream is served by its own thread, so one robot's error or
slowness never touches another's stream. With a ``SeedDispenser`` (train.algo=grpo) ``EpisodeSeed`` hands out
reset seeds so that groups of episodes start from the same state (fleet.groups).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections import deque
from concurrent import futures
from dataclasses import dataclass, field

import grpc

from fleet.codec import PayloadError, check_spec, decode_chunk
from fleet.groups import SeedDispenser
from fleet.proto import fleet_pb2 as pb
from fleet.proto import fleet_pb2_grpc as pb_grpc
from fleet.security import TokenBook, server_credentials
from fleet.store import EpisodeStore
from fleet.weights import WeightPublisher

log = logging.getLogger(__name__)


@dataclass
class RobotStats:
    """What the live table shows per robot (updated by the ingest threads)."""

    episodes: int = 0
    transitions: int = 0
    bytes: int = 0
    duplicates: int = 0
    rejected: int = 0
    last_error: str = ""
    held_version: int = -1
    held_since: float = 0.0
    spooled: int = 0
    successes: deque = field(default_factory=lambda: deque(maxlen=20))
    connected: bool = False

    def row(self) -> dict:
        s = list(self.successes)
        return {"episodes": self.episodes, "transitions": self.transitions, "bytes": self.bytes,
                "duplicates": self.duplicates, "rejected": self.rejected, "last_error": self.last_error,
                "held_version": self.held_version, "spooled": self.spooled, "connected": self.connected,
                "success": (sum(s) / len(s)) if s else None}


class LearnerService(pb_grpc.LearnerServicer):
    def __init__(self, store: EpisodeStore, publisher: WeightPublisher, tokens: TokenBook, max_message_bytes: int,
                 limits: dict[str, int], piece_bytes: int = 1 << 20, seeds: SeedDispenser | None = None):
        self.store, self.publisher, self.tokens, self.seeds = store, publisher, tokens, seeds
        self.max_message_bytes, self.limits, self.piece_bytes = max_message_bytes, limits, piece_bytes
        self.read_ahead = 64  # chunks of one stream validated and queued for commit ahead of their ack
        self.sessions: dict[str, str] = {}
        self.stats: dict[str, RobotStats] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    # --- helpers --------------------------------------------------------------------------
    def _caller(self, context: grpc.ServicerContext) -> str:
        robot_id = self.tokens.check(context.invocation_metadata())
        if robot_id is None:
            md = dict(context.invocation_metadata() or ())
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          f"robot {md.get('x-robot-id', '')!r}: missing or wrong token (metadata 'authorization')")
        return robot_id

    def _session(self, context: grpc.ServicerContext, session_id: str, caller: str) -> None:
        owner = self.sessions.get(session_id)
        if owner is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"session {session_id!r} unknown; register again")
        if owner != caller:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"robot {caller!r} cannot use the session of robot {owner!r}")

    def _stat(self, robot_id: str) -> RobotStats:
        with self.lock:
            return self.stats.setdefault(robot_id, RobotStats())

    # --- rpcs -----------------------------------------------------------------------------
    def Register(self, request: pb.RegisterRequest, context: grpc.ServicerContext) -> pb.RegisterReply:
        caller = self._caller(context)
        spec = request.spec
        if spec.robot_id != caller:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"robot {caller!r} cannot register as {spec.robot_id!r}")
        try:
            check_spec(spec, self.limits)
        except PayloadError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        self.store.register(spec)
        session = uuid.uuid4().hex
        with self.lock:
            self.sessions[session] = caller
        self._stat(caller)
        log.info("registered %s (%s, D=%d A=%d, %d cameras)", caller, spec.embodiment, spec.state_dim,
                 spec.action_dim, len(spec.cameras))
        return pb.RegisterReply(session_id=session, policy_version=self.publisher.latest,
                                max_message_bytes=self.max_message_bytes,
                                group_size=self.seeds.group_size if self.seeds else 0)

    def EpisodeSeed(self, request: pb.SeedRequest, context: grpc.ServicerContext) -> pb.SeedReply:
        """The reset seed of the caller's next episode: each seed goes to ``group_size`` episodes of one task."""
        caller = self._caller(context)
        self._session(context, request.session_id, caller)
        if self.seeds is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "this learner hands out no reset seeds "
                          "(train.algo=grpo does)")
        spec = self.store.spec(caller)
        return pb.SeedReply(seed=self.seeds.next(spec.task if spec else ""), group=self.seeds.group_size)

    def StreamEpisodes(self, request_iterator, context: grpc.ServicerContext):
        """Acks in order; a reader thread validates and queues the next chunks while earlier ones are committed,
        so the chunks of one stream share group commits (ingest is not bound to one fsync per chunk)."""
        caller = self._caller(context)
        stat = self._stat(caller)
        stat.connected = True
        pending: queue.Queue = queue.Queue(maxsize=self.read_ahead)
        reader = threading.Thread(target=self._read_chunks, args=(request_iterator, context, caller, stat, pending),
                                  name=f"ingest-{caller}", daemon=True)
        reader.start()
        try:
            while True:
                try:
                    item = pending.get(timeout=0.5)
                except queue.Empty:
                    if not context.is_active():  # the robot went away: its reader has stopped too
                        return
                    continue
                if item[0] == "end":
                    return
                if item[0] == "abort":
                    context.abort(item[1], item[2])
                _, chunk, entry, steps, nbytes = item
                dup = self.store.result(entry)
                if dup:
                    stat.duplicates += 1
                else:
                    stat.transitions += steps
                    stat.bytes += nbytes
                    if chunk.last:
                        stat.episodes += 1
                        stat.successes.append(bool(chunk.success_episode))
                yield pb.ChunkAck(episode_id=chunk.episode_id, chunk_index=chunk.chunk_index, duplicate=dup,
                                  stored_episodes=stat.episodes)
        finally:
            stat.connected = False

    def _read_chunks(self, request_iterator, context, caller: str, stat: RobotStats, pending: queue.Queue) -> None:
        """Validate each chunk and queue it for commit; a bad one ends the stream (after the acks before it)."""

        def push(item: tuple) -> None:  # never block forever on a stream whose acking side has gone
            while context.is_active():
                try:
                    pending.put(item, timeout=0.5)
                    return
                except queue.Full:
                    continue

        try:
            for chunk in request_iterator:
                owner = self.sessions.get(chunk.session_id)
                if owner != caller:
                    code = grpc.StatusCode.FAILED_PRECONDITION if owner is None else grpc.StatusCode.PERMISSION_DENIED
                    msg = (f"session {chunk.session_id!r} unknown; register again" if owner is None
                           else f"robot {caller!r} cannot use the session of robot {owner!r}")
                    push(("abort", code, msg))
                    return
                if chunk.robot_id != caller:
                    stat.rejected += 1
                    stat.last_error = f"wrote as {chunk.robot_id!r}"
                    push(("abort", grpc.StatusCode.PERMISSION_DENIED,
                                 f"robot {caller!r} cannot write episodes as {chunk.robot_id!r}"))
                    return
                try:
                    piece = decode_chunk(self.store.spec(caller), chunk)
                except PayloadError as err:
                    stat.rejected += 1
                    stat.last_error = str(err)
                    log.warning("rejected chunk %s/%d from %s: %s", chunk.episode_id, chunk.chunk_index, caller, err)
                    push(("abort", grpc.StatusCode.INVALID_ARGUMENT,
                                 f"episode {chunk.episode_id} chunk {chunk.chunk_index}: {err}"))
                    return
                raw = chunk.SerializeToString()
                entry = self.store.submit(caller, chunk, raw, piece)
                push(("ok", chunk, entry, piece.num_steps, len(raw)))
            push(("end",))
        except grpc.RpcError:  # the robot went away (or sent an oversized message): end this stream only
            push(("end",))
        except Exception as err:  # a bug or a store failure: tell this robot, keep serving the others
            log.exception("ingest from %s failed", caller)
            push(("abort", grpc.StatusCode.INTERNAL, f"learner error: {err}"))

    def SubscribePolicy(self, request: pb.PolicyRequest, context: grpc.ServicerContext):
        caller = self._caller(context)
        self._session(context, request.session_id, caller)
        have = request.have_version
        while context.is_active() and not self.stopping.is_set():
            v = self.publisher.wait_newer(have, timeout=0.5)
            if v is None:
                continue
            yield from self._pieces(context, v)
            have = v

    def FetchPolicy(self, request: pb.FetchRequest, context: grpc.ServicerContext):
        caller = self._caller(context)
        self._session(context, request.session_id, caller)
        v = self.publisher.latest if request.version < 0 else request.version
        if v < 0:
            context.abort(grpc.StatusCode.NOT_FOUND, "no policy has been published yet")
        yield from self._pieces(context, v)

    def _pieces(self, context: grpc.ServicerContext, version: int):
        try:
            pieces = list(self.publisher.pieces(version, self.piece_bytes))
        except KeyError:
            context.abort(grpc.StatusCode.NOT_FOUND, f"policy version {version} is not kept (latest "
                          f"{self.publisher.latest}, kept {sorted(self.publisher.versions)})")
        yield from pieces

    def Health(self, request: pb.HealthRequest, context: grpc.ServicerContext) -> pb.HealthReply:
        caller = self._caller(context)
        if request.session_id:
            self._session(context, request.session_id, caller)
            stat = self._stat(caller)
            stat.held_version, stat.held_since, stat.spooled = (request.held_version, request.held_since,
                                                                request.spooled_chunks)
        with self.lock:
            rows = {rid: s.row() for rid, s in self.stats.items()}
        return pb.HealthReply(
            policy_version=self.publisher.latest, robots=len(rows),
            episodes=sum(r["episodes"] for r in rows.values()),
            transitions=sum(r["transitions"] for r in rows.values()),
            bytes_ingested=sum(r["bytes"] for r in rows.values()),
            rejected=sum(r["rejected"] for r in rows.values()),
            metrics_json=json.dumps({"time": time.time(), "robots": rows}))


def server_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000), ("grpc.so_reuseport", 0)]


def start_learner_server(service: LearnerService, host: str, port: int, max_workers: int,
                         tls_cert: str | None = None, tls_key: str | None = None) -> tuple[grpc.Server, int]:
    """Bind and start; returns the server and the bound port (``port=0`` picks a free one)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="learner"),
                         options=server_options(service.max_message_bytes))
    pb_grpc.add_LearnerServicer_to_server(service, server)
    addr = f"{host}:{port}"
    bound = (server.add_secure_port(addr, server_credentials(tls_cert, tls_key)) if tls_cert
             else server.add_insecure_port(addr))
    if bound == 0:
        raise OSError(f"port: cannot bind {addr}")
    server.start()
    return server, bound
