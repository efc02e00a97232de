"""Fault tests with real processes: kill -9 the learner mid-stream; cut a robot's connection for 10 s."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from conftest import CuttableProxy, InProcessLearner, LearnerProc, free_port
from fleet_helpers import make_piece, make_spec, stored_keys, wait_until

from fleet.client import FleetClient

CHUNKS_PER_EPISODE, STEPS = 3, 20


def _feed(client: FleetClient, episodes: int, every_s: float, submitted: list, seed0: int = 0) -> threading.Thread:
    def run():
        for i in range(episodes):
            eid = f"ep{seed0 + i:04d}"
            for c in range(CHUNKS_PER_EPISODE):
                last = c == CHUNKS_PER_EPISODE - 1
                client.submit(eid, c, last, make_piece(STEPS, seed=1000 * (seed0 + i) + c, done_last=last))
                submitted.append((eid, c))
            time.sleep(every_s)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _shard_frames(store: Path) -> tuple[int, np.ndarray]:
    """(episodes in finalized shards, every stored state row) read back from the LeRobotDataset files."""
    episodes, states = 0, []
    for part in sorted((store / "shards").glob("shard-*/part-*")):
        episodes += json.loads((part / "meta" / "info.json").read_text())["total_episodes"]
        for f in sorted((part / "data").rglob("*.parquet")):
            states.append(np.stack(pq.read_table(f).column("observation.state").to_pylist()))
    return episodes, np.concatenate(states)


def test_kill9_learner_exactly_once(tmp_path, certs, tokens):
    port = free_port()
    learner = LearnerProc(tmp_path / "store", certs, port).start()
    client = FleetClient(f"localhost:{port}", make_spec("robot-0"), tokens["robot-0"], tmp_path / "spool",
                         ca=str(certs["ca"]), subscribe=False, window=4).start()
    submitted: list[tuple[str, int]] = []
    episodes = 40
    feeder = _feed(client, episodes, 0.03, submitted)
    try:
        wait_until(lambda: client.acked >= 20, 120, what="20 acks before the kill")
        learner.kill9()
        acked_at_kill = set(client.acked_keys)
        # every acknowledged chunk is in the dead learner's index (the ack came after the fsynced commit)
        in_index = {(e, c) for _, e, c in stored_keys(tmp_path / "store")}
        assert acked_at_kill <= in_index
        assert len(acked_at_kill) < episodes * CHUNKS_PER_EPISODE  # the kill really was mid-stream
        learner.start()
        feeder.join()
        wait_until(client.drained, 180, what="the spool to drain after the restart")
    finally:
        client.stop()
        learner.stop()
    keys = stored_keys(tmp_path / "store")
    assert len(keys) == len(set(keys)) == episodes * CHUNKS_PER_EPISODE
    assert {(e, c) for _, e, c in keys} == set(submitted)
    db = sqlite3.connect(tmp_path / "store" / "index.sqlite")
    n_eps, n_sharded = db.execute("SELECT COUNT(*), COUNT(shard) FROM episodes").fetchone()
    db.close()
    assert n_eps == n_sharded == episodes
    # the LeRobotDataset shards hold every episode exactly once (no duplicates from resends or the crash)
    shard_episodes, states = _shard_frames(tmp_path / "store")
    assert shard_episodes == episodes
    assert len(states) == episodes * CHUNKS_PER_EPISODE * STEPS
    assert len(np.unique(states, axis=0)) == len(states)


def test_connection_cut_10s_loses_nothing(tmp_path, certs, tokens):
    learner = InProcessLearner(tmp_path / "store", certs)
    proxy = CuttableProxy(learner.port)
    client = FleetClient(f"localhost:{proxy.port}", make_spec("robot-0"), tokens["robot-0"], tmp_path / "spool",
                         ca=str(certs["ca"]), subscribe=False).start()
    submitted: list[tuple[str, int]] = []
    try:
        _feed(client, 5, 0.0, submitted).join()
        wait_until(client.drained, 60, what="first episodes")
        proxy.cut()
        feeder = _feed(client, 20, 0.4, submitted, seed0=100)  # the robot keeps working during the cut
        time.sleep(10)
        spooled_during_cut = len(client.spool)
        stored_during_cut = len(stored_keys(tmp_path / "store"))
        proxy.restore()
        feeder.join()
        wait_until(client.drained, 120, what="the spool to drain after the cut")
    finally:
        client.stop()
        proxy.close()
        learner.close()
    assert spooled_during_cut > 0 and stored_during_cut == 5 * CHUNKS_PER_EPISODE
    keys = stored_keys(tmp_path / "store")
    assert len(keys) == len(set(keys)) == 25 * CHUNKS_PER_EPISODE
    assert {(e, c) for _, e, c in keys} == set(submitted)
