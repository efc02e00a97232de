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
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.live import Live
from rich.table import Table

from fleet.config import DemoConfig
from fleet.run_learner import LearnerProcess, start_learner
from fleet.security import write_certs

console = Console()


def _init_policy(root: Path, task: str) -> Path:
    """A fresh Gaussian policy shaped for the Meta-World task (D=39, A=4), saved once."""
    from robopolicy.policy import Policy, PolicyConfig

    path = root / "init_policy"
    if not (path / "config.json").is_file():
        Policy(PolicyConfig(state_dim=39, action_dim=4, chunk=1, action_low=[-1.0] * 4,
                            action_high=[1.0] * 4)).save_pretrained(path)
    return path


def _robot_cmd(cfg: DemoConfig, i: int, port: int, certs: dict[str, Path]) -> list[str]:
    root = Path(cfg.root)
    return [sys.executable, "-m", "robopolicy", "fleet", "robot", f"robot_id=robot-{i}",
            f"learner=localhost:{port}", f"ca={certs['ca']}", f"token_file={certs['tokens']}",
            f"spool={root / 'spool' / f'robot-{i}'}", f"seed={1000 * i}", f"teleop.kind={cfg.teleop}",
            *[f"env_kwargs.{k}={v}" for k, v in cfg.env_kwargs.items()]]


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
    root = Path(cfg.root)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    certs = write_certs(root / "certs", ["localhost", "127.0.0.1"], robots=cfg.robots)
    if not cfg.learner.train.init_policy:
        cfg.learner.train.init_policy = str(_init_policy(root, cfg.env_kwargs.get("task", "")))
    proc = start_learner(cfg.learner)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    robots = []
    for i in range(cfg.robots):
        with open(root / "logs" / f"robot-{i}.log", "w") as log:  # the child keeps its own handle
            robots.append(subprocess.Popen(_robot_cmd(cfg, i, proc.port, certs), stdout=log, stderr=subprocess.STDOUT,
                                           env=env, start_new_session=True))
    meter, started = RateMeter(), time.monotonic()
    try:
        with Live(render_table(proc, meter, started), console=console, refresh_per_second=2) as live:
            while not stop.wait(0.5):
                live.update(render_table(proc, meter, started))
                if cfg.seconds and time.monotonic() - started >= cfg.seconds:
                    break
                if all(r.poll() is not None for r in robots):
                    console.print("[red]all robots exited[/]; see logs/")
                    break
            console.print("[yellow]stopping[/]: robots finish their episode and drain their spool ...")
            for r in robots:
                if r.poll() is None:
                    r.send_signal(signal.SIGINT)
            deadline = time.monotonic() + 60
            while any(r.poll() is None for r in robots) and time.monotonic() < deadline:
                live.update(render_table(proc, meter, started))
                time.sleep(0.5)
    finally:
        for r in robots:
            if r.poll() is None:
                r.kill()
        proc.stop()
    counts = proc.store.counts()
    console.print(f"[bold]stored[/]: {counts['episodes']} episodes, {counts['transitions']:,} transitions "
                  f"in {root / 'store'}")
    print(json.dumps({"event": "demo_stopped", "robots": cfg.robots} | counts), flush=True)
    return 0
