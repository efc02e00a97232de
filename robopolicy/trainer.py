"""The training loop: experience source -> algorithm update -> logs, checkpoints, plot.

    for each iteration:
        rollout = source.collect(policy)         (T, B, ...) from one policy version
        metrics = algo.update(rollout)           the shared objective, minibatched
        policy.normalizer.update(rollout.obs)    after the update, so the update saw the
                                                 same statistics as the rollout did (frozen
                                                 when fine-tuning a pretrained policy)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from robopolicy.checkpoint import save_best, save_checkpoint
from robopolicy.critic import ValueCritic
from robopolicy.policy import Policy
from robopolicy.rollout import ExperienceSource, episode_summary
from robopolicy.run_logger import RunLogger, plot_learning_curve
from robopolicy.types import Rollout


class Algorithm(Protocol):
    def update(self, rollout: Rollout, progress: float = 0.0) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...


class Trainer:
    def __init__(
        self,
        policy: Policy,
        critic: ValueCritic,
        algo: Algorithm,
        source: ExperienceSource,
        run_dir: Path,
        cfg: DictConfig,
        logger: RunLogger,
        start_step: int = 0,
        evaluator: Callable[[Policy], dict[str, float]] | None = None,
        behaviour: Policy | None = None,
    ):
        self.policy, self.critic, self.algo, self.source = policy, critic, algo, source
        self.run_dir, self.cfg, self.logger = run_dir, cfg, logger
        self.step = start_step
        self.iteration = 0
        self.elapsed_s = 0.0  # wall-clock of earlier sessions of this run (resume), evaluations included
        self.evaluator = evaluator
        # Who acts in the env: the trained policy (on-policy), or a teacher (BC on teacher data).
        self.behaviour = behaviour
        self.best_return = -float("inf")
        self.stopped_at_return = False
        flag = cfg.get("update_obs_stats")
        self.update_obs_stats = (not cfg.get("init_policy")) if flag is None else bool(flag)

    def train(self, total_steps: int, show_progress: bool = True) -> dict[str, float]:
        every = max(1, int(self.cfg.checkpoint_every))
        next_ckpt = (self.step // every + 1) * every
        eval_every = int(self.cfg.get("eval_every", 0) or 0)
        next_eval = (self.step // eval_every + 1) * eval_every if eval_every > 0 else None
        last: dict[str, float] = {}
        session_start = time.perf_counter()
        columns = (
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("return {task.fields[ret]}  {task.fields[sps]} steps/s"), TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        if self.step == 0 and self.cfg.get("init_policy") and self.evaluator is not None:
            # The pretrained starting point, so curves and steps-to-threshold start from it.
            start = self.evaluator(self.policy) | {"eval/is_initial": 1.0}
            self.logger.log(0, start)
            self._after_eval(start)
            if self.stopped_at_return:
                # Nothing to fine-tune: the run ends at step 0 and its checkpoint is the starting policy.
                print(f"not training: the starting policy's eval {self._stop_reason(start)} already reaches the "
                      f"stop threshold")
                return start
        with Progress(*columns, disable=not show_progress) as bar:
            task = bar.add_task("train", total=total_steps, completed=self.step, ret="-", sps="-")
            while self.step < total_steps:
                t0 = time.perf_counter()
                rollout = self.source.collect(self.behaviour or self.policy)
                t1 = time.perf_counter()
                metrics = self.algo.update(rollout, progress=self.step / total_steps)
                if self.update_obs_stats:
                    self.policy.normalizer.update(rollout.obs)
                t2 = time.perf_counter()
                steps = int(rollout.chunk_steps.sum())
                self.step += steps
                self.iteration += 1
                self.source.policy_version += 1
                metrics |= episode_summary(list(self.source.recent_episodes)[-20:])
                metrics |= getattr(self.source, "source_metrics", {})  # e.g. a run-wide curriculum's state
                metrics |= {
                    "time/steps_per_s": steps / (t2 - t0),
                    "time/collect_s": t1 - t0,
                    "time/update_s": t2 - t1,
                    "train/iteration": float(self.iteration),
                }
                if next_eval is not None and self.evaluator is not None and self.step >= next_eval:
                    metrics |= self.evaluator(self.policy)
                    next_eval = (self.step // eval_every + 1) * eval_every
                    self._after_eval(metrics)
                # Since the run started, evaluations and checkpoints included: wall-clock to a success threshold.
                metrics["time/elapsed_s"] = self.elapsed_s + time.perf_counter() - session_start
                self.logger.log(self.step, metrics)
                last = metrics
                ret = metrics.get("episode/return")
                bar.update(
                    task, completed=min(self.step, total_steps), sps=f"{metrics['time/steps_per_s']:.0f}",
                    ret="-" if ret is None else f"{ret:.1f}",
                )
                if self.step >= next_ckpt or self.step >= total_steps or self.stopped_at_return:
                    self.save(elapsed_s=metrics["time/elapsed_s"])
                    next_ckpt = (self.step // every + 1) * every
                if self.stopped_at_return:
                    bar.console.print(f"stopping at step {self.step:,}: eval {self._stop_reason(metrics)} reached "
                                      f"the stop threshold")
                    break
        return last

    @staticmethod
    def _stop_reason(metrics: dict[str, float]) -> str:
        if "eval/confirmed_success" in metrics:
            return f"success {metrics['eval/success']:.2f}, confirmed {metrics['eval/confirmed_success']:.2f},"
        return (f"success {metrics['eval/success']:.2f}" if "eval/success" in metrics
                else f"return {metrics['eval/return']:.1f}")

    def _after_eval(self, metrics: dict[str, float]) -> None:
        eval_return, success = metrics["eval/return"], metrics.get("eval/success")
        stop_on = metrics.get("eval/confirmed_success", success)  # stop_confirm: the repeated evaluations decide
        # Where the env reports success, "best" is the success rate (return breaks ties: +1e-6 * return).
        score = eval_return if success is None else success + 1e-6 * eval_return
        if self.cfg.get("keep_best", False) and score > self.best_return:
            self.best_return = score
            save_best(self.run_dir, self.policy, self.step, eval_return)
        stop, stop_success = self.cfg.get("stop_return"), self.cfg.get("stop_success")
        self.stopped_at_return = (stop is not None and eval_return >= float(stop)) or (
            stop_success is not None and stop_on is not None and stop_on >= float(stop_success)
        )

    def save(self, elapsed_s: float | None = None) -> Path:
        state = {"step": self.step, "iteration": self.iteration, "algo": self.algo.state_dict(),
                 "policy_version": self.source.policy_version, "best_return": self.best_return,
                 "elapsed_s": self.elapsed_s if elapsed_s is None else elapsed_s}
        path = save_checkpoint(self.run_dir, self.step, self.policy, self.critic, state, self.cfg)
        plot_learning_curve(self.run_dir / "metrics.jsonl", self.run_dir / "learning_curve.png", self.run_dir.name)
        return path
