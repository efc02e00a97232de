"""`robopolicy fleet demo`: a learner and N simulated robots on loopback, with a live table; Ctrl-C stops it.

    robopolicy fleet demo robots=4 seconds=60 env_kwargs.task=reach-v3 teleop=scripted learner.train.algo=ppo

Everything lives under ``root``: certs/ (self-signed CA, server cert, tokens), init_policy/ (a fresh policy for the
task unless ``learner.train.init_policy`` names one), store/ (the learner's index, shards, policies), spool/<robot>/
and logs/. The learner runs in this process (TLS on loopback); each robot is its own
``python -m robopolicy fleet robot`` process. On stop, robots finish their episode and drain their spool (up to
30 s), then the learner writes its open shard.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.live import Live
from rich.table import Table

from fleet.config import DemoConfig
from fleet.local_fleet import LocalFleet
from fleet.run_learner import LearnerProcess

console = Console()


class RateMeter:
    """Transitions/s per robot over the last few seconds, from cumulative counts."""

    def __init__(self, window_s: float = 5.0):
        self.window_s, self.hist = window_s, {}

    def rate(self, key: str, total: int) -> float:
        now = time.monotonic()
        h = self.hist.setdefault(key, [])
        h.append((now, total))
        while len(h) > 2 and now - h[0][0] > self.window_s:
            h.pop(0)
        dt = h[-1][0] - h[0][0]
        return (h[-1][1] - h[0][1]) / dt if dt > 0 else 0.0


def render_table(proc: LearnerProcess, meter: RateMeter, started: float) -> Table:
    with proc.service.lock:
        rows = {rid: s.row() for rid, s in sorted(proc.service.stats.items())}
    total = sum(r["transitions"] for r in rows.values())
    mb = sum(r["bytes"] for r in rows.values()) / 1e6
    table = Table(title=f"robopolicy fleet — learner v{proc.publisher.latest} · {len(rows)} robots · "
                        f"{total:,} transitions ({meter.rate('_all', total):,.0f}/s) · {mb:.1f} MB stored · "
                        f"{time.monotonic() - started:.0f}s   (Ctrl-C stops)")
    for col in ("robot", "link", "episodes", "transitions/s", "policy version", "success (last 20)", "spooled",
                "rejected"):
        table.add_column(col, justify="left" if col == "robot" else "right")
    for rid, r in rows.items():
        success = "-" if r["success"] is None else f"{100 * r['success']:.0f}%"
        table.add_row(rid, "[green]up[/]" if r["connected"] else "[red]down[/]", str(r["episodes"]),
                      f"{meter.rate(rid, r['transitions']):,.0f}", str(r["held_version"]), success,
                      str(r["spooled"]), str(r["rejected"]))
    return table


def run_demo(cfg: DemoConfig | DictConfig) -> int:
    if isinstance(cfg, DictConfig):
        OmegaConf.resolve(cfg)
        cfg = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    fleet = LocalFleet(cfg)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        fleet.start()
        proc = fleet.proc
        meter, started = RateMeter(), time.monotonic()
        with Live(render_table(proc, meter, started), console=console, refresh_per_second=2) as live:
            while not stop.wait(0.5):
                live.update(render_table(proc, meter, started))
                if cfg.seconds and time.monotonic() - started >= cfg.seconds:
                    break
                if not fleet.alive():
                    console.print("[red]all robots exited[/]; see logs/")
                    break
            console.print("[yellow]stopping[/]: robots finish their episode and drain their spool ...")
            fleet.signal_robots()
            deadline = time.monotonic() + 60
            while fleet.alive() and time.monotonic() < deadline:
                live.update(render_table(proc, meter, started))
                time.sleep(0.5)
    finally:
        fleet.stop(drain_s=0.0)
    counts = fleet.proc.store.counts()
    console.print(f"[bold]stored[/]: {counts['episodes']} episodes, {counts['transitions']:,} transitions "
                  f"in {Path(cfg.root) / 'store'}")
    print(json.dumps({"event": "demo_stopped", "robots": cfg.robots} | counts), flush=True)
    return 0
