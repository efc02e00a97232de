"""Fixtures of the fleet tests: TLS material, an in-process learner, learner subprocesses."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from fleet_helpers import wait_until

from fleet.learner import LearnerService, start_learner_server
from fleet.security import TokenBook, write_certs
from fleet.store import EpisodeStore
from fleet.weights import WeightPublisher

ROOT = Path(__file__).resolve().parents[2]
ROBOTS = ["robot-0", "robot-1", "robot-2"]


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> dict[str, Path]:
    paths = write_certs(tmp_path_factory.mktemp("certs"), ["localhost", "127.0.0.1"], robots=len(ROBOTS))
    return paths


@pytest.fixture(scope="session")
def tokens(certs) -> dict[str, str]:
    return json.loads(certs["tokens"].read_text())


class InProcessLearner:
    def __init__(self, root: Path, certs: dict[str, Path], max_message_bytes: int = 1 << 20,
                 service_cls=LearnerService, shard_seconds: float = 0.5):
        self.store = EpisodeStore(root, shard_episodes=50, shard_seconds=shard_seconds)
        self.publisher = WeightPublisher(root / "policies")
        self.service = service_cls(self.store, self.publisher, TokenBook.load(certs["tokens"]), max_message_bytes,
                                   {"max_dim": 64, "max_image_side": 256})
        self.server, self.port = start_learner_server(self.service, "127.0.0.1", 0, 64, str(certs["cert"]),
                                                      str(certs["key"]))
        self.address = f"localhost:{self.port}"

    def close(self) -> None:
        self.service.stopping.set()
        self.server.stop(grace=1).wait()
        self.store.close()


@pytest.fixture
def learner(tmp_path, certs):
    srv = InProcessLearner(tmp_path / "store", certs)
    yield srv
    srv.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LearnerProc:
    """`python -m robopolicy fleet learner` as a real process on a fixed port (so robots can reconnect)."""

    def __init__(self, root: Path, certs: dict[str, Path], port: int, extra: list[str] = ()):
        self.root, self.certs, self.port, self.extra = root, certs, port, list(extra)
        self.proc: subprocess.Popen | None = None

    def start(self) -> LearnerProc:
        (self.root / "learner.json").unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "robopolicy", "fleet", "learner", f"root={self.root}", f"port={self.port}",
               f"tokens_file={self.certs['tokens']}", f"cert={self.certs['cert']}", f"key={self.certs['key']}",
               "shard_seconds=0.5", "shard_episodes=10", *self.extra]
        env = os.environ | {"PYTHONPATH": str(ROOT)}
        with open(self.root.parent / f"learner-{self.port}.log", "ab") as log:  # the child keeps its own handle
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: (self.root / "learner.json").is_file() or self.proc.poll() is not None, 120,
                   what="learner start")
        assert self.proc.poll() is None, (self.root.parent / f"learner-{self.port}.log").read_text()[-3000:]
        return self

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class CuttableProxy:
    """A TCP forwarder in front of the learner; ``cut()`` drops every connection and refuses new ones."""

    def __init__(self, upstream_port: int):
        import threading

        self.upstream_port = upstream_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.open = True
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.open = False
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.conns = []

    def restore(self) -> None:
        self.open = True

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.sock.close()
