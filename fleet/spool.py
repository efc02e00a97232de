"""The robot's on-disk spool: every episode chunk is written here before it is sent, and removed after its ack.

    spool = Spool("spool/robot-0")
    spool.put(chunk)             fsynced file <seq>.pb (written to a temp name, then renamed: never half a file)
    for seq, path in spool.pending(): ...
    spool.ack(seq)               the learner stored it: delete the file

A network drop or a learner restart loses nothing: on reconnect the client sends every file still here, in order;
the learner answers a chunk it already stored with ``duplicate`` and stores it once. A chunk the learner rejected
as invalid moves to ``rejected/`` so it is kept for inspection but not resent forever.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from fleet.proto import fleet_pb2 as pb


class Spool:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        (self.root / "rejected").mkdir(parents=True, exist_ok=True)
        for tmp in self.root.glob("*.tmp"):  # a write cut by a crash: never acknowledged, never sent
            tmp.unlink()
        existing = [int(p.stem) for p in self.root.glob("*.pb")]
        self._next = max(existing, default=-1) + 1
        self.cond = threading.Condition()

    def put(self, chunk: pb.EpisodeChunk) -> int:
        with self.cond:
            seq = self._next
            self._next += 1
        path = self.root / f"{seq:012d}.pb"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(chunk.SerializeToString())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.root)
        with self.cond:
            self.cond.notify_all()
        return seq

    def pending(self, after: int = -1) -> list[tuple[int, Path]]:
        """Spooled chunks with sequence number > ``after``, oldest first."""
        out = sorted((int(p.stem), p) for p in self.root.glob("*.pb"))
        return [(s, p) for s, p in out if s > after]

    def read(self, seq: int) -> pb.EpisodeChunk:
        return pb.EpisodeChunk.FromString((self.root / f"{seq:012d}.pb").read_bytes())

    def ack(self, seq: int) -> None:
        (self.root / f"{seq:012d}.pb").unlink(missing_ok=True)

    def reject(self, seq: int) -> None:
        src = self.root / f"{seq:012d}.pb"
        if src.exists():
            os.replace(src, self.root / "rejected" / src.name)

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*.pb"))

    def wait(self, timeout: float) -> None:
        with self.cond:
            self.cond.wait(timeout)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
