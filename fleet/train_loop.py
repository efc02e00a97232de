"""The learner's training thread: FleetRollouts -> update -> publish a new version, one version per iteration.

    algo=ppo        the shared PPO (robopolicy.algorithms.ppo) on robot rollouts of any head and chunk H
                    (intervention steps: see fleet.rollouts)
    algo=grpo       the same PPO with group-relative advantages (no critic in the advantage): the learner hands out
                    reset seeds, episodes sharing (task, seed) form a group (fleet.groups)
    algo=hg_dagger  HG-DAgger: every intervention step ever received (obs, teleoperator action) is an imitation
                    label; each iteration runs ``epochs`` passes of the head's imitation loss over that aggregate
    algo=recap      RECAP-style advantage-conditioned policy (fleet.recap): a value function on fleet data labels
                    each step "advantage positive" or not (intervention steps positive); the head imitates all
                    steps conditioned on that label; the published version acts conditioned on "positive"

Periodic asynchrony: robots keep acting with version v while the update runs; the rollout of the next iteration
only uses data within ``max_policy_lag`` versions of the newest. Metrics go to ``<run_dir>/metrics.jsonl`` (one JSON
line per update with the fleet's episode return / success and the policy lag), the policy of each version to
``<root>/policies/v<n>/``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fleet.config import FleetTrainConfig
from fleet.groups import FleetGroupRollouts
from fleet.rollouts import CollectStopped, EpisodeFeed, FleetRollouts
from fleet.weights import WeightPublisher
from robopolicy.rollout import episode_summary
from robopolicy.types import OBS_STATE, Rollout

log = logging.getLogger(__name__)


@dataclass
class HGDAggerConfig:
    learning_rate: float = 3e-4
    """Adam step size."""
    epochs: int = 5
    """Passes over the aggregated intervention labels per iteration."""
    batch_size: int = 256
    """Minibatch size."""


class HGDAgger:
    """Imitation on the aggregate of all intervention segments (HG-DAgger, Kelly et al. 2019)."""

    def __init__(self, policy, config: HGDAggerConfig):
        self.policy, self.config = policy, config
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=config.learning_rate)
        self.obs: list[torch.Tensor] = []
        self.actions: list[torch.Tensor] = []

    def update(self, rollout: Rollout, progress: float = 0.0) -> dict[str, float]:
        m = rollout.masks["intervention"]
        if m.any():
            self.obs.append(rollout.obs[OBS_STATE][m])
            self.actions.append(rollout.actions[m])  # (N, H, A) env units
        if not self.obs:
            return {"hg_dagger/labels": 0.0}
        obs, act = torch.cat(self.obs), torch.cat(self.actions)
        target = self.policy.scaler.from_env(act).clamp(-1.0, 1.0)
        losses = []
        self.policy.train()
        for _ in range(self.config.epochs):
            for idx in torch.randperm(len(obs)).split(self.config.batch_size):
                loss = self.policy.head.imitation_loss(self.policy.features({OBS_STATE: obs[idx]}), target[idx])
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), 1.0)
                self.optimizer.step()
                losses.append(loss.item())
        self.policy.eval()
        return {"hg_dagger/labels": float(len(obs)), "loss/bc": float(np.mean(losses))}


class FleetTrainer:
    def __init__(self, cfg: FleetTrainConfig, feed: EpisodeFeed, publisher: WeightPublisher, run_dir: Path):
        from fleet.run_learner import FleetConfigError
        from robopolicy.checkpoint import load_policy
        from robopolicy.critic import CriticConfig, ValueCritic

        if not cfg.init_policy:
            raise FleetConfigError(f"train.init_policy: required for train.algo={cfg.algo} (the first version)")
        torch.manual_seed(cfg.seed)
        self.cfg, self.publisher, self.run_dir = cfg, publisher, Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        latest = publisher.versions.get(publisher.latest)
        if latest is not None:  # continue from the newest published version (e.g. after a restart)
            from fleet.weights import load_policy_blob

            self.policy = load_policy_blob(latest.version, latest.blob, latest.sha256, latest.config_json)
        else:
            self.policy = load_policy(cfg.init_policy)
        self.source: FleetRollouts | FleetGroupRollouts = FleetRollouts(feed, cfg.n_steps, cfg.lanes,
                                                                        cfg.max_policy_lag, cfg.stale)
        if cfg.algo in ("ppo", "grpo"):
            from robopolicy.algorithms.ppo import PPO, PPOConfig

            options = dict(cfg.algo_options)
            if cfg.algo == "grpo":
                options.setdefault("advantage", "grpo")
            try:
                ppo_cfg = PPOConfig(**(options | {"n_steps": cfg.n_steps}))
                if cfg.algo == "grpo" and ppo_cfg.advantage not in ("grpo", "gdpo"):
                    raise ValueError(f"advantage: {ppo_cfg.advantage!r}, train.algo=grpo needs grpo or gdpo")
                if cfg.algo == "grpo":
                    self.source = FleetGroupRollouts(feed, cfg.lanes, ppo_cfg.group_size, cfg.max_policy_lag,
                                                     cfg.stale, decoupled=ppo_cfg.advantage == "gdpo")
            except (TypeError, ValueError) as err:
                raise FleetConfigError(f"train.algo_options: {err} (train.lanes={cfg.lanes})") from err
            critic = ValueCritic(self.policy.config.state_dim, CriticConfig())
            self.algo = PPO(self.policy, critic, ppo_cfg, num_envs=cfg.lanes)
        elif cfg.algo == "recap":
            from fleet.recap import Recap, RecapConfig

            try:
                self.algo = Recap(self.policy, RecapConfig(**dict(cfg.algo_options)))
            except (TypeError, ValueError) as err:
                raise FleetConfigError(f"train.algo_options: {err}") from err
        else:
            try:
                self.algo = HGDAgger(self.policy, HGDAggerConfig(**dict(cfg.algo_options)))
            except TypeError as err:
                raise FleetConfigError(f"train.algo_options: {err}") from err
        self.source.policy_version = max(0, publisher.latest)
        self.updates = 0
        self._thread = threading.Thread(target=self._run, name="fleet-train", daemon=True)

    def start(self) -> FleetTrainer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.source.stop()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        metrics_path = self.run_dir / "metrics.jsonl"
        while not self.cfg.updates or self.updates < self.cfg.updates:
            t0 = time.perf_counter()
            try:
                rollout = self.source.collect(self.policy)
            except CollectStopped:
                return
            t1 = time.perf_counter()
            recent = list(self.source.recent_episodes)[-20:]
            autonomous = list(self.source.feed.recent_autonomous)[-20:]
            metrics = self.algo.update(rollout)
            self.policy.eval()
            version = self.publisher.publish(self.policy)
            lag = np.asarray(self.source.used_versions)
            self.source.policy_version = version
            self.updates += 1
            row = {"version": version, "update": self.updates, "time": time.time(),
                   "transitions": int(rollout.num_steps * rollout.num_envs),
                   "interventions": int(rollout.masks["intervention"].sum()),
                   "dropped_transitions": self.source.dropped_transitions,
                   "env_steps": self.source.feed.received_transitions,
                   "episode/autonomous_success": float(np.mean(autonomous)) if autonomous else None,
                   "policy_lag_mean": float(lag.mean()), "policy_lag_max": int(lag.max()),
                   "time/collect_s": t1 - t0, "time/update_s": time.perf_counter() - t1}
            row |= episode_summary(recent) | {k: float(v) for k, v in metrics.items()}
            with open(metrics_path, "a") as f:
                f.write(json.dumps(row) + "\n")
            log.info("update %d -> version %d: %s", self.updates, version,
                     {k: round(v, 3) for k, v in row.items() if k.startswith("episode/")})
