"""`robopolicy fleet <learner|robot|demo|certs> [key=value ...]` (Hydra overrides of configs/fleet/<name>.yaml)."""

from __future__ import annotations

import json
import logging

from rich.console import Console

USAGE = """usage: robopolicy fleet <subcommand> [key=value ...]

subcommands:
  certs    self-signed CA, server cert and robot tokens: out=<folder> robots=N [hosts=localhost,127.0.0.1]
  learner  central learner: root=<store> tokens_file=<tokens.json> cert=<pem> key=<key> [port=50051] [train.algo=ppo]
  robot    one robot: robot_id=robot-0 learner=host:port ca=<ca.pem> token_file=<tokens.json> spool=<folder>
  demo     a learner and N simulated robots on loopback with a live table: robots=4 [seconds=60]
"""

console = Console(stderr=True)


def _compose(name: str, overrides: list[str]):
    from fleet.config import register_fleet_configs
    from robopolicy.cli import compose

    register_fleet_configs()
    return compose(f"fleet/{name}", overrides)


def cmd_certs(args: list[str]) -> int:
    from fleet.run_learner import FleetConfigError
    from fleet.security import write_certs

    opts = dict(a.split("=", 1) for a in args if "=" in a)
    unknown = sorted(set(opts) - {"out", "robots", "hosts"})
    if unknown or "out" not in opts:
        raise FleetConfigError(f"certs: takes out=<folder> [robots=N] [hosts=a,b]; got {args}")
    paths = write_certs(opts["out"], opts.get("hosts", "localhost,127.0.0.1").split(","), int(opts.get("robots", 0)))
    console.print(f"[bold]certs[/]: {json.dumps({k: str(v) for k, v in paths.items()})}")
    return 0


def cmd_learner(args: list[str]) -> int:
    from fleet.run_learner import run_learner

    return run_learner(_compose("learner", args))


def cmd_robot(args: list[str]) -> int:
    from fleet.run_robot import run_robot

    return run_robot(_compose("robot", args))


def cmd_demo(args: list[str]) -> int:
    from fleet.demo import run_demo

    return run_demo(_compose("demo", args))


COMMANDS = {"certs": cmd_certs, "learner": cmd_learner, "robot": cmd_robot, "demo": cmd_demo}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help") or argv[0] not in COMMANDS:
        print(USAGE)
        return 0 if argv and argv[0] in ("-h", "--help", "help") else 2
    # the demo's live table owns the terminal: only warnings from its learner
    level = logging.WARNING if argv[0] == "demo" else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from omegaconf.errors import OmegaConfBaseException

    from fleet.run_learner import FleetConfigError

    try:
        return COMMANDS[argv[0]](argv[1:])
    except (FleetConfigError, OmegaConfBaseException) as err:
        console.print(f"[red]config error[/]: {err}")
        return 2
