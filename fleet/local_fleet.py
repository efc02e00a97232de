"""A learner (in this process) and N simulated robot processes on loopback: the machinery of ``fleet demo``.

    fleet = LocalFleet(demo_cfg).start()      certs, init policy, learner (TLS), robot-<i> processes
    ... fleet.proc (the LearnerProcess), fleet.robots (Popen), fleet.alive() ...
    fleet.stop()                              robots finish their episode and drain their spool, then the learner

Everything lives under ``cfg.root``: certs/, init_policy/ (a fresh policy for the task unless
``learner.train.init_policy`` names one), store/, spool/<robot>/ and logs/robot-<i>.log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fleet.config import DemoConfig
from fleet.run_learner import LearnerProcess, start_learner
from fleet.security import write_certs


def fresh_init_policy(root: Path) -> Path:
    """A fresh Gaussian policy shaped for a Meta-World task (D=39, A=4), saved once."""
    from robopolicy.policy import Policy, PolicyConfig

    path = root / "init_policy"
    if not (path / "config.json").is_file():
        Policy(PolicyConfig(state_dim=39, action_dim=4, chunk=1, action_low=[-1.0] * 4,
                            action_high=[1.0] * 4)).save_pretrained(path)
    return path


def robot_command(cfg: DemoConfig, i: int, port: int, certs: dict[str, Path]) -> list[str]:
    root = Path(cfg.root)
    return [sys.executable, "-m", "robopolicy", "fleet", "robot", f"robot_id=robot-{i}",
            f"learner=localhost:{port}", f"ca={certs['ca']}", f"token_file={certs['tokens']}",
            f"spool={root / 'spool' / f'robot-{i}'}", f"seed={1000 * i}", f"teleop.kind={cfg.teleop}",
            *[f"env_kwargs.{k}={v}" for k, v in cfg.env_kwargs.items()], *cfg.robot_overrides]


class LocalFleet:
    def __init__(self, cfg: DemoConfig):
        self.cfg, self.root = cfg, Path(cfg.root)
        self.proc: LearnerProcess | None = None
        self.robots: list[subprocess.Popen] = []

    def start(self) -> LocalFleet:
        cfg = self.cfg
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        certs = write_certs(self.root / "certs", ["localhost", "127.0.0.1"], robots=cfg.robots)
        if not cfg.learner.train.init_policy:
            cfg.learner.train.init_policy = str(fresh_init_policy(self.root))
        self.proc = start_learner(cfg.learner)
        env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        for i in range(cfg.robots):
            with open(self.root / "logs" / f"robot-{i}.log", "w") as log:  # the child keeps its own handle
                self.robots.append(subprocess.Popen(robot_command(cfg, i, self.proc.port, certs), stdout=log,
                                                    stderr=subprocess.STDOUT, env=env, start_new_session=True))
        return self

    def alive(self) -> int:
        return sum(r.poll() is None for r in self.robots)

    def signal_robots(self) -> None:
        """Ask every robot to finish its episode and drain its spool (SIGINT)."""
        for r in self.robots:
            if r.poll() is None:
                r.send_signal(signal.SIGINT)

    def stop(self, drain_s: float = 60.0) -> None:
        """Stop robots (drained, killed after ``drain_s``), then the learner (its open shard is written)."""
        self.signal_robots()
        deadline = time.monotonic() + drain_s
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.5)
        for r in self.robots:
            if r.poll() is None:
                r.kill()
        if self.proc is not None:
            self.proc.stop()
