"""Fleet ingest and weight propagation on loopback: our learner vs LeRobot's gRPC transport helpers, same run.

Ingest: N simulated robots (sender processes, robots as threads) stream Meta-World-sized state episodes (200 steps,
39-D state, 4-D action, one chunk per episode) -- and 4 robots with one 84x84 camera (JPEG) -- to
    ours:    our learner (TLS, token checked, every field validated, acked after the SQLite group commit is fsynced;
             LeRobotDataset shards written in the background as in production)
    lerobot: LeRobot's ``LearnerService.SendTransitions`` fed by ``send_bytes_in_chunks`` with the same episodes as
             ``transitions_to_bytes`` (torch.save of Transition dicts), received by ``receive_bytes_in_chunks`` and
             deserialized with ``bytes_to_transitions`` (plaintext, in memory, not stored: what LeRobot's learner does)
Robots replay pre-encoded episodes (no simulator, no robot-side spool) so the figure is the learner's capacity;
ours keeps up to 32 unacked chunks in flight per robot, as FleetClient does.

Weights: a 5M-parameter policy is published every ``--publish-every`` s to R robots (FleetClient, subscribed), which
stream episodes tagged with the version they hold; latency = from publish to every robot holding (verified and
loaded) the new version; policy lag = learner version when a chunk is stored minus the version that produced it.

    python benchmarks/fleet_throughput.py --quick      # < 1 min
The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import queue
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

D, A, T_EP, IMG = 39, 4, 200, 84


def _piece(seed: int, cams: int, version: int = 0):
    from fleet.codec import EpisodePiece

    rng = np.random.default_rng(seed)
    images = {}
    if cams:  # a smooth scene with a moving square (JPEG-compressible, like a rendered frame)
        yy, xx = np.mgrid[0:IMG, 0:IMG]
        base = np.stack([xx * 3, yy * 3, (xx + yy) * 1.5], -1).astype(np.uint8)
        frames = np.repeat(base[None], T_EP, 0)
        for t in range(T_EP):
            x = (t + seed) % (IMG - 10)
            frames[t, 30:40, x:x + 10] = 255
        images["front"] = frames
    return EpisodePiece(
        state=rng.normal(size=(T_EP, D)).astype(np.float32), action=rng.uniform(-1, 1, (T_EP, A)).astype(np.float32),
        reward=rng.normal(size=T_EP).astype(np.float32), done=np.arange(T_EP) == T_EP - 1,
        intervention=np.zeros(T_EP, bool), policy_version=np.full(T_EP, version, np.int64),
        timestamp=time.time() + np.arange(T_EP) / 80, success=np.zeros(T_EP, bool),
        logp=rng.normal(size=T_EP).astype(np.float32), trace=rng.normal(size=(T_EP, A)).astype(np.float32),
        images=images)


def _spec(robot_id: str, cams: int):
    from fleet.proto import fleet_pb2 as pb

    spec = pb.RobotSpec(robot_id=robot_id, embodiment="bench", state_dim=D, action_dim=A, task="bench", fps=80,
                        trace_dim=A, action_low=[-1.0] * A, action_high=[1.0] * A)
    if cams:
        spec.cameras.add(name="front", height=IMG, width=IMG, encoding="jpeg")
    return spec


def _lerobot_bytes(piece) -> bytes:
    import torch
    from lerobot.transport.utils import transitions_to_bytes

    p, trans = piece, []
    for t in range(T_EP):
        state = {"observation.state": torch.from_numpy(p.state[t])}
        nxt = {"observation.state": torch.from_numpy(p.state[min(t + 1, T_EP - 1)])}
        for cam, imgs in p.images.items():
            state[f"observation.images.{cam}"] = torch.from_numpy(imgs[t]).permute(2, 0, 1).contiguous()
            nxt[f"observation.images.{cam}"] = torch.from_numpy(imgs[min(t + 1, T_EP - 1)]).permute(2, 0, 1)
        trans.append({"state": state, "action": torch.from_numpy(p.action[t]), "reward": float(p.reward[t]),
                      "next_state": nxt, "done": bool(p.done[t]), "truncated": False,
                      "complementary_info": {"policy_version": int(p.policy_version[t]),
                                             "intervention": bool(p.intervention[t])}})
    return transitions_to_bytes(trans)


# --- sender processes ------------------------------------------------------------------------
def sender(kind: str, address: str, ca: str | None, robots: list[tuple[str, str]], cams: int, seconds: float,
           go, out, ready) -> None:
    import grpc

    from fleet.client import make_channel
    from fleet.codec import encode_chunk
    from fleet.proto import fleet_pb2 as pb
    from fleet.proto import fleet_pb2_grpc as pb_grpc
    from fleet.security import call_metadata

    pieces = [_piece(s, cams) for s in range(4)]
    if kind == "lerobot":
        from lerobot.transport import services_pb2, services_pb2_grpc
        from lerobot.transport.utils import grpc_channel_options, send_bytes_in_chunks

        payloads = [_lerobot_bytes(p) for p in pieces]
    results = []

    def run_ours(rid: str, token: str) -> None:
        channel = make_channel(address, ca, 64 << 20)
        stub = pb_grpc.LearnerStub(channel)
        md = call_metadata(rid, token)
        spec = _spec(rid, cams)
        session = stub.Register(pb.RegisterRequest(spec=spec), metadata=md, timeout=30, wait_for_ready=True).session_id
        msgs = [encode_chunk(spec, p, session, "x", 0, True) for p in pieces]
        ready.put(rid)
        window = threading.Semaphore(32)
        deadline = [0.0]
        sent = [0]

        def gen():
            i = 0
            while time.monotonic() < deadline[0]:
                window.acquire()
                m = msgs[i % len(msgs)]
                m.episode_id = f"{rid}-{i}"
                i += 1
                sent[0] += 1
                yield m

        go.wait()
        deadline[0] = time.monotonic() + seconds
        acked = 0
        for _ack in stub.StreamEpisodes(gen(), metadata=md):
            window.release()
            acked += 1
        results.append({"chunks": acked, "transitions": acked * T_EP})
        channel.close()

    def run_lerobot(rid: str) -> None:
        channel = grpc.insecure_channel(address, grpc_channel_options())
        stub = services_pb2_grpc.LearnerServiceStub(channel)
        ready.put(rid)
        go.wait()
        deadline = time.monotonic() + seconds
        count = [0]

        def gen():
            i = 0
            while time.monotonic() < deadline:
                yield from send_bytes_in_chunks(payloads[i % len(payloads)], services_pb2.Transition)
                i += 1
                count[0] += 1

        stub.SendTransitions(gen())
        results.append({"chunks": count[0], "transitions": count[0] * T_EP})
        channel.close()

    threads = [threading.Thread(target=run_ours if kind == "ours" else run_lerobot,
                                args=(rid, tok) if kind == "ours" else (rid,)) for rid, tok in robots]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(results)


def _recorder(lat: list, rid: str):
    def on_policy(version: int, policy, published_at: float) -> None:
        lat.append((rid, version, time.time() - published_at))  # the robot holds it: checked and loaded

    return on_policy


def weight_robot(address: str, ca: str, robots: list[tuple[str, str]], seconds: float, go, out, spool: str) -> None:
    from fleet.client import FleetClient

    lat: list[tuple[str, int, float]] = []
    clients = []
    for rid, token in robots:
        c = FleetClient(address, _spec(rid, 0), token, f"{spool}/{rid}", ca=ca, health_every_s=5.0)
        c.on_policy = _recorder(lat, rid)
        clients.append(c.start())
    go.wait()
    deadline, k = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        for c in clients:
            c.submit(f"{c.spec.robot_id}-{k}", 0, True, _piece(k, 0, version=max(0, c.policy_version)))
        k += 1
        time.sleep(0.05)
    for c in clients:
        c.stop(drain_s=10)
    out.put(lat)


# --- servers --------------------------------------------------------------------------------
def lerobot_server(port_holder: list, counter: dict):
    import grpc
    from lerobot.transport import services_pb2, services_pb2_grpc
    from lerobot.transport.utils import bytes_to_transitions, grpc_channel_options, receive_bytes_in_chunks

    q: queue.Queue = queue.Queue(maxsize=64)  # bounded (LeRobot's is not): the backlog would otherwise fill memory
    shutdown = threading.Event()

    class Servicer(services_pb2_grpc.LearnerServiceServicer):
        def SendTransitions(self, request_iterator, context):  # as lerobot.rl.learner_service does
            receive_bytes_in_chunks(request_iterator, q, shutdown, "bench")
            return services_pb2.Empty()

    def consume():  # the learner side deserializes every message into Transition dicts
        while not shutdown.is_set():
            try:
                buf = q.get(timeout=0.2)
            except queue.Empty:
                continue
            counter["transitions"] += len(bytes_to_transitions(buf))
            counter["bytes"] += len(buf)

    from concurrent import futures

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64), options=grpc_channel_options())
    services_pb2_grpc.add_LearnerServiceServicer_to_server(Servicer(), server)
    port_holder.append(server.add_insecure_port("127.0.0.1:0"))
    server.start()
    threading.Thread(target=consume, daemon=True).start()
    return server, shutdown


def start_ours(root: Path, certs: dict, robots: int):
    from fleet.learner import LearnerService, start_learner_server
    from fleet.security import TokenBook
    from fleet.store import EpisodeStore
    from fleet.weights import WeightPublisher

    store = EpisodeStore(root, shard_episodes=200, shard_seconds=30)
    pub = WeightPublisher(root / "policies")
    svc = LearnerService(store, pub, TokenBook.load(certs["tokens"]), 64 << 20, {"max_dim": 4096, "max_image_side": 512})
    server, port = start_learner_server(svc, "127.0.0.1", 0, 256, str(certs["cert"]), str(certs["key"]))
    return store, pub, svc, server, port


def _split(robots: list, procs: int) -> list[list]:
    return [robots[i::procs] for i in range(min(procs, len(robots)))]


def ingest_run(kind: str, n: int, cams: int, seconds: float, certs: dict, tokens: dict, tmp: Path,
               procs: int, measure_dataset: bool = False) -> dict:
    ctx = mp.get_context("spawn")
    go, out, ready = ctx.Event(), ctx.Queue(), ctx.Queue()
    robots = [(f"robot-{i}", tokens[f"robot-{i}"]) for i in range(n)]
    if kind == "ours":
        store, _, _, server, port = start_ours(tmp / f"ours-{n}-{cams}", certs, n)
        address, ca = f"localhost:{port}", str(certs["ca"])
    else:
        holder, counter = [], {"transitions": 0, "bytes": 0}
        server, shutdown = lerobot_server(holder, counter)
        address, ca = f"127.0.0.1:{holder[0]}", None
    ps = [ctx.Process(target=sender, args=(kind, address, ca, part, cams, seconds, go, out, ready))
          for part in _split(robots, procs)]
    for p in ps:
        p.start()
    for _ in robots:  # every robot imported, connected (and registered) before the clock starts
        ready.get(timeout=300)

    def snapshot() -> tuple[int, int]:
        if kind == "ours":
            c = store.counts()
            return c["transitions"], c["bytes"]
        return counter["transitions"], counter["bytes"]

    # Figures over the streaming window only: what was durably stored (ours) / deserialized (LeRobot) in it.
    before = snapshot()
    t0 = time.monotonic()
    go.set()
    time.sleep(seconds)
    after = snapshot()
    wall = time.monotonic() - t0
    transitions, nbytes = after[0] - before[0], after[1] - before[1]
    results = [r for _ in ps for r in out.get(timeout=seconds + 300)]
    for p in ps:
        p.join()
    if kind == "ours":
        extra = {}
        if measure_dataset:  # how fast the background writer turns the stored backlog into LeRobotDataset shards
            store.shard_episodes = 50  # finalize often, so progress is visible within the window
            c0, t1 = store.counts()["sharded"], time.monotonic()
            time.sleep(30)
            c1 = store.counts()
            frames = T_EP * (c1["sharded"] - c0)
            extra = {"dataset_write_frames_per_s": frames / (time.monotonic() - t1)}
        server.stop(0)
        store.close(write_pending=False)
    else:
        shutdown.set()
        server.stop(0)
        extra = {}
    sent = sum(r["transitions"] for r in results)
    return {"robots": n, "cameras": cams, "transitions_per_s": transitions / wall, "mb_per_s": nbytes / wall / 1e6,
            "stored_transitions": transitions, "sender_transitions": sent, "wall_s": round(wall, 2)} | extra


def weights_run(n: int, versions: int, every: float, certs: dict, tokens: dict, tmp: Path, procs: int) -> dict:
    import torch

    from robopolicy.encoders import EncoderConfig
    from robopolicy.policy import Policy, PolicyConfig

    store, pub, _, server, port = start_ours(tmp / f"weights-{n}", certs, n)
    torch.manual_seed(0)
    policy = Policy(PolicyConfig(state_dim=D, action_dim=A, chunk=1, encoder=EncoderConfig(hidden_sizes=[2048, 2400]),
                                 action_low=[-1.0] * A, action_high=[1.0] * A))
    n_params = sum(p.numel() for p in policy.parameters())
    pub.publish(policy)
    ctx = mp.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    robots = [(f"robot-{i}", tokens[f"robot-{i}"]) for i in range(n)]
    seconds = versions * every + 3
    ps = [ctx.Process(target=weight_robot, args=(f"localhost:{port}", str(certs["ca"]), part, seconds, go, out,
                                                 str(tmp / f"spool-{n}"))) for part in _split(robots, procs)]
    for p in ps:
        p.start()
    time.sleep(8.0 + 0.3 * n)  # imports, first fetch of version 0
    go.set()
    published = {0: pub.versions[0].published_at}
    for _ in range(versions):
        time.sleep(every)
        with torch.no_grad():
            for prm in policy.parameters():
                prm.add_(1e-3)
        v = pub.publish(policy)
        published[v] = pub.versions[v].published_at
    lat = [x for _ in ps for x in out.get(timeout=seconds + 300)]
    for p in ps:
        p.join()
    per_version = {}
    for rid, v, dt in lat:
        if v > 0:
            per_version.setdefault(v, {})[rid] = dt
    complete = [max(d.values()) for v, d in per_version.items() if len(d) == n]  # every robot holds it
    db = sqlite3.connect(store.root / "index.sqlite")
    rows = db.execute("SELECT received_at, vmin FROM chunks").fetchall()
    db.close()
    times = sorted(published.items())
    lags = [max(v for v, t in times if t <= rec) - vmin for rec, vmin in rows]
    server.stop(0)
    store.close()
    return {"robots": n, "params": n_params, "blob_mb": len(pub.versions[pub.latest].blob) / 1e6,
            "versions": versions, "versions_reaching_all": len(complete),
            "propagation_p50_s": float(np.percentile(complete, 50)) if complete else None,
            "propagation_p95_s": float(np.percentile(complete, 95)) if complete else None,
            "policy_lag_mean": float(np.mean(lags)) if lags else None,
            "policy_lag_p95": float(np.percentile(lags, 95)) if lags else None,
            "policy_lag_max": int(max(lags)) if lags else None, "chunks_with_lag": len(lags)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs (< 1 minute)")
    parser.add_argument("--seconds", type=float, default=10.0, help="streaming time per configuration")
    parser.add_argument("--procs", type=int, default=2, help="sender processes (robots are threads in them)")
    parser.add_argument("--versions", type=int, default=20, help="weight versions to publish")
    parser.add_argument("--publish-every", type=float, default=1.5, help="seconds between versions")
    args = parser.parse_args()
    if args.quick:  # one configuration, a few versions; no LeRobotDataset writer figure
        args.seconds, args.versions, args.publish_every, args.procs = 3.0, 3, 1.0, 1
    configs = [(1, 0), (4, 0), (16, 0), (4, 1)] if not args.quick else [(4, 0)]
    from fleet.security import write_certs

    tmp = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    certs = write_certs(tmp / "certs", ["localhost", "127.0.0.1"], robots=16)
    tokens = json.loads(certs["tokens"].read_text())
    ingest = []
    for n, cams in configs:
        ours = ingest_run("ours", n, cams, args.seconds, certs, tokens, tmp, args.procs,
                          measure_dataset=(n, cams) == (4, 0) and not args.quick)
        peer = ingest_run("lerobot", n, cams, args.seconds, certs, tokens, tmp, args.procs)
        row = {"robots": n, "cameras": cams, "ours": ours, "lerobot": peer,
               "ratio_transitions": ours["transitions_per_s"] / max(peer["transitions_per_s"], 1e-9)}
        ingest.append(row)
        print(f"{n:>2} robots, {cams} camera(s): ours {ours['transitions_per_s']:>9,.0f} transitions/s "
              f"({ours['mb_per_s']:.1f} MB/s, stored)  lerobot transport {peer['transitions_per_s']:>9,.0f}/s "
              f"({peer['mb_per_s']:.1f} MB/s, in memory)  ratio {row['ratio_transitions']:.2f}x", flush=True)
    dataset_fps = [r["ours"]["dataset_write_frames_per_s"] for r in ingest if "dataset_write_frames_per_s" in r["ours"]]
    if dataset_fps:
        print(f"LeRobotDataset shard writer (background, after ingest): {dataset_fps[0]:,.0f} frames/s", flush=True)
    weights = weights_run(4, args.versions, args.publish_every, certs, tokens, tmp, args.procs)
    print(f"weights: {weights['params'] / 1e6:.1f}M params ({weights['blob_mb']:.1f} MB) to {weights['robots']} robots: "
          f"p50 {weights['propagation_p50_s']} s, p95 {weights['propagation_p95_s']} s; policy lag mean "
          f"{weights['policy_lag_mean']} max {weights['policy_lag_max']} versions", flush=True)
    print(json.dumps({"benchmark": "fleet_throughput", "quick": args.quick, "ingest": ingest, "weights": weights}))


if __name__ == "__main__":
    main()
