"""`robopolicy fleet learner`: store + weight publisher + gRPC service (+ optional training loop) in one process.

    robopolicy fleet learner root=runs/fleet tokens_file=certs/tokens.json cert=certs/server.pem key=certs/server.key

Runs until SIGINT / SIGTERM; then stops accepting calls (2 s grace), writes the open shard and closes the index.
Once serving it writes ``<root>/learner.json`` {"port", "pid"} (useful with ``port=0``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
from omegaconf import DictConfig, OmegaConf

from fleet.config import LearnerConfig
from fleet.learner import LearnerService, start_learner_server
from fleet.security import TokenBook
from fleet.store import EpisodeStore
from fleet.weights import WeightPublisher

log = logging.getLogger(__name__)


class FleetConfigError(ValueError):
    """A fleet config value that cannot work; the message names the key."""


def check_learner_config(cfg: LearnerConfig) -> None:
    if cfg.tls and not (cfg.cert and cfg.key):
        raise FleetConfigError("cert/key: tls=true needs cert=<server.pem> key=<server.key> "
                               "(robopolicy fleet certs out=<folder> writes them), or tls=false for plaintext")
    for key in ("cert", "key") if cfg.tls else ():
        if not Path(getattr(cfg, key)).is_file():
            raise FleetConfigError(f"{key}: {getattr(cfg, key)} not found")
    if cfg.max_message_bytes < 1024:
        raise FleetConfigError(f"max_message_bytes: {cfg.max_message_bytes}, expected >= 1024")
    if cfg.train.algo not in ("none", "ppo", "grpo", "hg_dagger", "recap"):
        raise FleetConfigError(f"train.algo: {cfg.train.algo!r}, expected one of none, ppo, grpo, hg_dagger, recap")
    if cfg.train.stale not in ("drop", "importance"):
        raise FleetConfigError(f"train.stale: {cfg.train.stale!r}, expected drop or importance")
    if cfg.train.algo == "grpo":
        grpo_group_size(cfg)
    if cfg.train.algo in ("ppo", "grpo") and cfg.train.algo_options.get("score_executed_only"):
        raise FleetConfigError("train.algo_options.score_executed_only: the learner scores whole chunks (each robot "
                               "picks its own execute, which the learner does not know)")


def grpo_group_size(cfg: LearnerConfig) -> int:
    """G of train.algo=grpo (PPOConfig.group_size unless algo_options sets it); it must divide train.lanes."""
    from robopolicy.algorithms.ppo import PPOConfig

    group_size = int(cfg.train.algo_options.get("group_size", PPOConfig.group_size))
    if group_size < 2 or cfg.train.lanes % group_size:
        raise FleetConfigError(f"train.algo_options.group_size: {group_size} must be >= 2 and divide "
                               f"train.lanes={cfg.train.lanes} (the episodes of one rollout)")
    return group_size


@dataclass
class LearnerProcess:
    """A running learner: ``stop()`` shuts it down cleanly."""

    cfg: LearnerConfig
    store: EpisodeStore
    publisher: WeightPublisher
    service: LearnerService
    server: grpc.Server
    port: int
    trainer: object | None = None

    def stop(self) -> None:
        self.service.stopping.set()
        if self.trainer is not None:
            self.trainer.stop()
        self.server.stop(grace=2).wait()
        self.store.close()


def start_learner(cfg: LearnerConfig | DictConfig) -> LearnerProcess:
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    check_learner_config(cfg)
    import torch

    torch.set_num_threads(cfg.torch_threads)
    tokens = TokenBook.load(cfg.tokens_file)
    root = Path(cfg.root)
    feed = None
    if cfg.train.algo != "none":
        from fleet.rollouts import EpisodeFeed

        feed = EpisodeFeed()
    store = EpisodeStore(root, cfg.shard_episodes, cfg.shard_seconds, on_episode=feed.put if feed else None)
    publisher = WeightPublisher(root / "policies")
    if cfg.train.init_policy and publisher.latest < 0:
        from robopolicy.checkpoint import load_policy

        publisher.publish(load_policy(cfg.train.init_policy))
    limits = {"max_dim": cfg.max_dim, "max_image_side": cfg.max_image_side}
    seeds = None
    if cfg.train.algo == "grpo":  # robots reset groups of episodes to the same seed (fleet.groups)
        from fleet.groups import SeedDispenser

        seeds = SeedDispenser(grpo_group_size(cfg))
    service = LearnerService(store, publisher, tokens, cfg.max_message_bytes, limits, cfg.policy_piece_bytes, seeds)
    server, port = start_learner_server(service, cfg.host, cfg.port, cfg.max_workers,
                                        cfg.cert if cfg.tls else None, cfg.key if cfg.tls else None)
    trainer = None
    if feed is not None:
        from fleet.train_loop import FleetTrainer

        trainer = FleetTrainer(cfg.train, feed, publisher, root / "train").start()
    (root / "learner.json").write_text(json.dumps({"port": port, "pid": os.getpid(), "tls": cfg.tls}))
    log.info("learner serving on %s:%d (%s), store %s", cfg.host, port, "TLS" if cfg.tls else "plaintext", root)
    return LearnerProcess(cfg, store, publisher, service, server, port, trainer)


def run_learner(cfg: LearnerConfig | DictConfig) -> int:
    proc = start_learner(cfg)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(json.dumps({"event": "serving", "port": proc.port}), flush=True)
    stop.wait()
    proc.stop()
    print(json.dumps({"event": "stopped"} | proc.store.counts()), flush=True)
    return 0
