"""The learner's episode store: a durable SQLite index (the ack point) and LeRobotDataset shards (the data set).

    store = EpisodeStore(root)
    dup = store.put(robot_id, chunk_bytes, piece_meta)   blocks until the chunk is committed and fsynced
    store.close()                                        writes the open shard, closes the index

Durability. A chunk is acknowledged only after its validated wire bytes are committed to ``index.sqlite`` (WAL,
``synchronous=FULL``: the commit returns after fsync). Commits are grouped: one writer thread takes every chunk
that is waiting, inserts them in one transaction and wakes their callers, so N robots share one fsync.
``(robot_id, episode_id, chunk_index)`` is the primary key, so a resend after a lost ack is stored once and
answered ``duplicate``.

The data set. LeRobot v3 keeps a parquet writer open until ``finalize``; a file cut by kill -9 is unreadable. So
complete episodes are written into *shards*, each its own LeRobotDataset under ``shards/shard-<n>/``, finalized
after ``shard_episodes`` episodes (or ``shard_seconds``, or at close), and only then recorded in the index
together with each episode's place in it. At start, a shard folder the index does not list as finalized is
deleted and its episodes (still in the index) are written again: every stored episode ends up in exactly one
finalized shard. Frames carry ``robot_index`` (names in ``meta/fleet_robots.json``), ``policy_version``,
``intervention``, the robot's ``timestamp``, ``logp`` (S,), ``chunk_step`` (index within the policy's action
chunk) and the task string.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fleet.codec import EpisodePiece, decode_chunk
from fleet.proto import fleet_pb2 as pb
from fleet.shard_layout import episode_buffer, episode_frames, shard_features, spec_signature

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS robots (robot_id TEXT PRIMARY KEY, robot_index INTEGER UNIQUE, spec BLOB,
                                   registered_at REAL);
CREATE TABLE IF NOT EXISTS chunks (robot_id TEXT, episode_id TEXT, chunk_index INTEGER, last INTEGER,
                                   num_steps INTEGER, nbytes INTEGER, payload BLOB, received_at REAL,
                                   interventions INTEGER, vmin INTEGER, vmax INTEGER,
                                   PRIMARY KEY (robot_id, episode_id, chunk_index));
CREATE TABLE IF NOT EXISTS episodes (robot_id TEXT, episode_id TEXT, num_chunks INTEGER, num_steps INTEGER,
                                     success INTEGER, interventions INTEGER, min_version INTEGER,
                                     max_version INTEGER, completed_at REAL, shard INTEGER, shard_episode INTEGER,
                                     PRIMARY KEY (robot_id, episode_id));
CREATE TABLE IF NOT EXISTS shards (shard INTEGER PRIMARY KEY, path TEXT, episodes INTEGER, finalized_at REAL);
"""


@dataclass
class StoredEpisode:
    """A complete episode as the learner's training side sees it (arrays concatenated over its chunks)."""

    robot_id: str
    episode_id: str
    piece: EpisodePiece
    success: bool
    task: str = ""
    reset_seed: int | None = None  # the learner-issued seed the episode was reset with (GRPO groups), if any


class EpisodeStore:
    def __init__(self, root: str | Path, shard_episodes: int = 200, shard_seconds: float = 30.0, fps: int = 30,
                 on_episode: Callable[[StoredEpisode], None] | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.shard_episodes, self.shard_seconds, self.fps = shard_episodes, shard_seconds, fps
        self.on_episode = on_episode
        self._db = self._connect()
        self._db.executescript(SCHEMA)
        self._lock = threading.Condition()
        self._queue: list[tuple[str, pb.EpisodeChunk, bytes, dict]] = []  # waiting for the next group commit
        self._done: dict[int, bool | Exception] = {}  # id(entry) -> duplicate (or the commit's error)
        self._closed = False
        self.shard_error: Exception | None = None  # the last failure of the shard thread
        self._flush = False  # flush() asks the shard thread to write whatever is complete now
        self._specs: dict[str, pb.RobotSpec] = {}
        for rid, blob in self._db.execute("SELECT robot_id, spec FROM robots"):
            self._specs[rid] = pb.RobotSpec.FromString(blob)
        self._recover_shards()
        self._complete: list[tuple[str, str]] = [
            tuple(r) for r in self._db.execute("SELECT robot_id, episode_id FROM episodes WHERE shard IS NULL "
                                               "ORDER BY completed_at")]
        self._writer = threading.Thread(target=self._commit_loop, name="store-commit", daemon=True)
        self._sharder = threading.Thread(target=self._shard_loop, name="store-shards", daemon=True)
        self._writer.start()
        self._sharder.start()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.root / "index.sqlite", check_same_thread=False, isolation_level=None, timeout=60)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a commit returns after fsync: the ack point
        return db

    # --- robots ---------------------------------------------------------------------------
    def register(self, spec: pb.RobotSpec) -> None:
        with self._lock:
            known = self._specs.get(spec.robot_id)
            self._specs[spec.robot_id] = spec
            if known is None:
                n = self._db.execute("SELECT COUNT(*) FROM robots").fetchone()[0]
                self._db.execute("INSERT INTO robots VALUES (?, ?, ?, ?)",
                                 (spec.robot_id, n, spec.SerializeToString(), time.time()))
            else:
                self._db.execute("UPDATE robots SET spec=? WHERE robot_id=?", (spec.SerializeToString(), spec.robot_id))

    def spec(self, robot_id: str) -> pb.RobotSpec | None:
        return self._specs.get(robot_id)

    # --- ingest (called from many gRPC threads) -------------------------------------------
    def put(self, robot_id: str, chunk: pb.EpisodeChunk, raw: bytes, piece: EpisodePiece) -> bool:
        """Store one validated chunk durably; returns True if it was already stored (a resend)."""
        return self.result(self.submit(robot_id, chunk, raw, piece))

    def submit(self, robot_id: str, chunk: pb.EpisodeChunk, raw: bytes, piece: EpisodePiece) -> tuple:
        """Queue a chunk for the next group commit without waiting; ``result(handle)`` waits for it. Lets one
        stream have several chunks in the same commit instead of one fsync per chunk."""
        meta = {"success": bool(chunk.success_episode), "interventions": int(piece.intervention.sum()),
                "vmin": int(piece.policy_version.min()), "vmax": int(piece.policy_version.max())}
        entry = (robot_id, chunk, raw, meta)
        with self._lock:
            if self._closed:
                raise RuntimeError("store is closed")
            self._queue.append(entry)
            self._lock.notify_all()
        return entry

    def result(self, entry: tuple) -> bool:
        """Wait until ``entry`` is committed (fsynced); True if it was a duplicate."""
        with self._lock:
            while id(entry) not in self._done:
                self._lock.wait()
            result = self._done.pop(id(entry))
        if isinstance(result, Exception):
            raise result
        return result

    def _commit_loop(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._lock.wait()
                if not self._queue and self._closed:
                    return
                batch, self._queue = self._queue, []
            try:
                results, completed = self._commit(batch)
            except Exception as err:  # e.g. disk full: every waiting caller gets the error, none an ack
                log.exception("commit of %d chunks failed", len(batch))
                results, completed = {id(e): err for e in batch}, []
            with self._lock:
                self._done.update(results)
                self._complete.extend(completed)
                self._lock.notify_all()
            for rid, eid in completed:
                self._emit(rid, eid)

    def _commit(self, batch: list) -> tuple[dict[int, bool], list[tuple[str, str]]]:
        results, completed = {}, []
        now = time.time()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for entry in batch:
                rid, c, raw, meta = entry
                cur = db.execute("INSERT OR IGNORE INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                 (rid, c.episode_id, c.chunk_index, int(c.last), c.num_steps, len(raw), raw, now,
                                  meta["interventions"], meta["vmin"], meta["vmax"]))
                dup = cur.rowcount == 0
                results[id(entry)] = dup
                if not dup and self._episode_complete(rid, c.episode_id):
                    n, steps, inter, vmin, vmax = db.execute(
                        "SELECT COUNT(*), SUM(num_steps), SUM(interventions), MIN(vmin), MAX(vmax) FROM chunks "
                        "WHERE robot_id=? AND episode_id=?", (rid, c.episode_id)).fetchone()
                    db.execute("INSERT OR IGNORE INTO episodes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                               (rid, c.episode_id, n, steps, int(meta["success"]), inter, vmin, vmax, now))
                    completed.append((rid, c.episode_id))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return results, completed

    def _episode_complete(self, rid: str, eid: str) -> bool:
        """All chunks 0..k present and chunk k is the last one."""
        n, last_idx = self._db.execute(
            "SELECT COUNT(*), MAX(CASE WHEN last=1 THEN chunk_index END) FROM chunks WHERE robot_id=? AND episode_id=?",
            (rid, eid)).fetchone()
        return last_idx is not None and n == last_idx + 1

    # --- reading back ---------------------------------------------------------------------
    def load_episode(self, robot_id: str, episode_id: str, db: sqlite3.Connection | None = None) -> StoredEpisode:
        db = db or self._db
        rows = db.execute("SELECT payload FROM chunks WHERE robot_id=? AND episode_id=? ORDER BY chunk_index",
                          (robot_id, episode_id)).fetchall()
        spec = self._specs[robot_id]
        msgs = [pb.EpisodeChunk.FromString(r[0]) for r in rows]
        pieces = [decode_chunk(spec, m) for m in msgs]
        piece = _concat(pieces)
        seed = msgs[0].reset_seed if msgs[0].HasField("reset_seed") else None
        return StoredEpisode(robot_id, episode_id, piece, bool(msgs[-1].success_episode), spec.task, seed)

    def _emit(self, rid: str, eid: str) -> None:
        if self.on_episode is None:
            return
        try:
            self.on_episode(self.load_episode(rid, eid))
        except Exception:  # a consumer's bug must not stop ingest
            log.exception("on_episode callback failed for %s/%s", rid, eid)

    def counts(self) -> dict[str, int]:
        db = self._connect()
        try:
            eps, steps = db.execute("SELECT COUNT(*), COALESCE(SUM(num_steps), 0) FROM episodes").fetchone()
            chunks, nbytes = db.execute("SELECT COUNT(*), COALESCE(SUM(nbytes), 0) FROM chunks").fetchone()
            sharded = db.execute("SELECT COUNT(*) FROM episodes WHERE shard IS NOT NULL").fetchone()[0]
        finally:
            db.close()
        return {"episodes": eps, "transitions": steps, "chunks": chunks, "bytes": nbytes, "sharded": sharded}

    # --- LeRobotDataset shards ------------------------------------------------------------
    def _recover_shards(self) -> None:
        finalized = {r[0] for r in self._db.execute("SELECT path FROM shards")}
        shard_dir = self.root / "shards"
        for d in sorted(shard_dir.glob("shard-*")) if shard_dir.is_dir() else []:
            if d.name not in finalized:
                log.warning("removing unfinalized shard %s (its episodes are rewritten from the index)", d)
                shutil.rmtree(d)

    def _shard_loop(self) -> None:
        db = self._connect()
        opened_at = time.monotonic()
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._closed or self._flush or len(self._complete) >= self.shard_episodes,
                                    timeout=max(0.1, self.shard_seconds - (time.monotonic() - opened_at)))
                closing = self._closed
                due = self._flush or time.monotonic() - opened_at >= self.shard_seconds
                if self._complete and (closing or due or len(self._complete) >= self.shard_episodes):
                    batch, self._complete = self._complete[: self.shard_episodes], self._complete[self.shard_episodes:]
                else:
                    batch = []
            if batch:
                try:
                    self._write_shard(db, batch)
                except Exception as err:
                    log.exception("writing a shard of %d episodes failed; they stay in the index and are written "
                                  "again at the next start", len(batch))
                    self.shard_error = err
                opened_at = time.monotonic()
            elif closing:
                with self._lock:
                    if not self._complete:
                        db.close()
                        return
            else:
                opened_at = time.monotonic()

    def _write_shard(self, db: sqlite3.Connection, episodes: list[tuple[str, str]]) -> None:
        from robopolicy.data.demos import quiet_lerobot_video_probe

        quiet_lerobot_video_probe()
        import datasets
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        from fleet.lerobot_compat import install_fast_embed_images

        datasets.disable_progress_bars()  # one bar per episode would flood the learner's log
        install_fast_embed_images()

        n = (db.execute("SELECT COALESCE(MAX(shard), -1) FROM shards").fetchone()[0]) + 1
        name = f"shard-{n:06d}"
        path = self.root / "shards" / name
        if path.exists():
            shutil.rmtree(path)
        groups: dict[bytes, list[tuple[str, str]]] = {}
        for rid, eid in episodes:  # one LeRobotDataset needs one feature set: group by robot spec signature
            groups.setdefault(spec_signature(self._specs[rid]), []).append((rid, eid))
        index = {rid: i for rid, i in db.execute("SELECT robot_id, robot_index FROM robots")}
        placed: list[tuple[int, str, str]] = []
        for g, members in enumerate(groups.values()):
            spec = self._specs[members[0][0]]
            ds = LeRobotDataset.create(repo_id=f"fleet/{name}-{g}", fps=int(spec.fps or self.fps),
                                       features=shard_features(spec), root=path / f"part-{g}", use_videos=False,
                                       image_writer_threads=4 if spec.cameras else 0)  # PNG writes off this thread
            try:
                for k, (rid, eid) in enumerate(members):
                    ep = self.load_episode(rid, eid, db)
                    task = self._specs[rid].task or "fleet"
                    if spec.cameras:  # images go through LeRobot's per-frame path (it writes the image files)
                        for frame in episode_frames(ep.piece, index[rid], task):
                            ds.add_frame(frame)
                        ds.save_episode()
                    else:  # whole columns at once: ~100x fewer Python calls than add_frame per frame
                        ds.save_episode(episode_data=episode_buffer(ep.piece, index[rid], task, ds.meta.total_episodes,
                                                                    ds.meta.fps))
                    placed.append((g * 1_000_000 + k, rid, eid))
            finally:
                ds.finalize()
            names = {i: r for r, i in index.items()}
            (path / f"part-{g}" / "meta" / "fleet_robots.json").write_text(json.dumps(names, indent=1))
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO shards VALUES (?, ?, ?, ?)", (n, name, len(placed), time.time()))
        db.executemany("UPDATE episodes SET shard=?, shard_episode=? WHERE robot_id=? AND episode_id=?",
                       [(n, k, rid, eid) for k, rid, eid in placed])
        # the data now lives in a finalized shard: drop the raw copies to keep the index small
        db.executemany("UPDATE chunks SET payload=NULL WHERE robot_id=? AND episode_id=?",
                       [(rid, eid) for _, rid, eid in placed])
        db.execute("COMMIT")

    def flush(self, timeout: float = 60.0) -> None:
        """Write every complete episode into a finalized shard now (waits up to ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._flush = True
            self._lock.notify_all()
        try:
            while time.monotonic() < deadline:
                with self._lock:
                    pending = len(self._complete)
                c = self.counts()
                if pending == 0 and c["sharded"] == c["episodes"]:
                    return
                if pending == 0 and self.shard_error is not None:
                    raise RuntimeError(f"store: shard writing failed: {self.shard_error}") from self.shard_error
                time.sleep(0.05)
        finally:
            with self._lock:
                self._flush = False

    def close(self, write_pending: bool = True) -> None:
        """Stop; with ``write_pending`` the complete episodes not yet in a shard are written first (else they stay
        in the index and are written at the next start)."""
        with self._lock:
            if not write_pending:
                self._complete = []
            self._closed = True
            self._lock.notify_all()
        self._writer.join()
        self._sharder.join()
        self._db.close()


def _concat(pieces: list[EpisodePiece]) -> EpisodePiece:
    if len(pieces) == 1:
        return pieces[0]
    names = [f for f in EpisodePiece.__dataclass_fields__ if f != "images"]
    cat = {k: np.concatenate([getattr(p, k) for p in pieces]) for k in names}
    images = {c: np.concatenate([p.images[c] for p in pieces]) for c in pieces[0].images}
    return EpisodePiece(**cat, images=images)
