"""Build a training run from a resolved config: env, policy, critic, algorithm, run folder."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from robopolicy.algorithms.ppo import PPO, PPOConfig
from robopolicy.checkpoint import load_policy, load_training_state, resolve_checkpoint
from robopolicy.critic import CriticConfig, ValueCritic
from robopolicy.evaluate import check_all_configs, env_config, eval_metrics, evaluate
from robopolicy.group_rollouts import GroupRollouts
from robopolicy.offline_critic import discounted_returns, pretrain_critic
from robopolicy.offline_improve import improve_offline
from robopolicy.policy import Policy, PolicyConfig
from robopolicy.reset_curriculum import RunWideCurriculum
from robopolicy.rollout import LocalRollouts
from robopolicy.run_logger import RunLogger, plot_learning_curve
from robopolicy.trainer import Trainer
from robopolicy.types import OBS_PRIVILEGED


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key."""


@dataclass
class RunResult:
    run_dir: Path
    checkpoint: Path
    final_metrics: dict[str, float]
    eval_summary: dict[str, Any] | None
    plot: Path | None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def policy_config_for(cfg: DictConfig, env: Any) -> PolicyConfig:
    data = OmegaConf.to_container(cfg.policy, resolve=True)
    data |= {
        "state_dim": int(env.state_dim), "action_dim": int(env.action_dim), "chunk": int(env.chunk),
        "action_low": env.action_low.tolist(), "action_high": env.action_high.tolist(),
    }
    encoder = data.get("encoder") or {}
    if encoder.get("privileged") or encoder.get("estimate_privileged"):
        privileged = getattr(env, "obs_shapes", {}).get(OBS_PRIVILEGED)
        if privileged is None:
            raise ConfigError(f"policy.encoder.privileged: the env {cfg.env.id} has no {OBS_PRIVILEGED!r} observation "
                              "(for our arm: env.kwargs.privileged=true)")
        data["privileged_dim"] = int(privileged[0])
    return PolicyConfig.from_dict(data)  # type: ignore[arg-type]


ALGOS = ("ppo", "bc", "distill", "o2o")
ON_POLICY = ("ppo", "distill", "o2o")  # all run the PPO class with different term weights / phases


def _algo_name(cfg: DictConfig) -> str:
    """The algorithm of the run; for resume=, the one the run was started with."""
    name = cfg.algo.get("name")
    if cfg.get("resume"):
        saved = resolve_checkpoint(cfg.resume) / "run_config.yaml"
        if saved.is_file():
            name = OmegaConf.load(saved).algo.get("name")
    if name not in ALGOS:
        raise ConfigError(f"algo.name: {name!r} is not available for `robopolicy train`; choose one of {list(ALGOS)}")
    return str(name)


def _algo_config(cfg: DictConfig) -> PPOConfig:
    data = OmegaConf.to_container(cfg.algo, resolve=True)
    name = data.get("name")  # type: ignore[union-attr]
    if name not in ON_POLICY:
        raise ConfigError(f"algo.name: {name!r} does not run on rollouts; algo=bc runs through run_training / run_bc")
    try:
        return PPOConfig(**data)  # type: ignore[arg-type]
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err)) from err


def _checked_policy(key: str, path: str, cfg: DictConfig, env: Any, head_overrides: Any = None) -> Policy:
    overrides = OmegaConf.to_container(head_overrides, resolve=True) if head_overrides else None
    try:
        policy = load_policy(path, head_overrides=overrides)  # type: ignore[arg-type]
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{key}: {err}") from err
    have = (policy.config.state_dim, policy.config.action_dim, policy.config.chunk)
    want = (int(env.state_dim), int(env.action_dim), int(env.chunk))
    if have != want:
        raise ConfigError(f"{key}: {path} has (state_dim, action_dim, chunk) = {have}, "
                          f"the env {cfg.env.id} needs {want}")
    return policy


def auxiliary_inputs(cfg: DictConfig, algo_cfg: PPOConfig, env: Any, seed: int) -> dict[str, Any]:
    """What the fine-tuning terms need: the teacher (distill), the frozen pretrained policy
    (anchor) and demo minibatches (bc); each loaded only when its coefficient is non-zero."""
    device = torch.device(cfg.device)
    out: dict[str, Any] = {"teacher": None, "reference": None, "demos": None}
    if algo_cfg.distill_coef > 0:
        if not cfg.get("teacher"):
            raise ConfigError("teacher: required when algo.distill_coef > 0 (a policy / checkpoint / run folder)")
        out["teacher"] = _checked_policy("teacher", cfg.teacher, cfg, env).to(device)
    if algo_cfg.anchor_coef > 0:
        if not cfg.get("init_policy"):
            raise ConfigError("init_policy: required when algo.anchor_coef > 0 (the policy to stay close to)")
        out["reference"] = _checked_policy("init_policy", cfg.init_policy, cfg, env,
                                           cfg.get("init_head_options")).to(device)
    offline = algo_cfg.critic_pretrain_steps > 0 or algo_cfg.offline_improve_iters > 0
    if algo_cfg.bc_coef > 0 or offline:
        from robopolicy.bc_run import DemoSampler, load_demo_tensors  # bc_run imports this module

        demos, obs, actions = load_demo_tensors(cfg, env, device)
        if algo_cfg.bc_coef > 0:
            out["demos"] = DemoSampler(obs, actions, algo_cfg.bc_batch_size, seed=seed)
        if offline:
            if getattr(demos, "reward", None) is None:
                key = "critic_pretrain_steps" if algo_cfg.critic_pretrain_steps > 0 else "offline_improve_iters"
                raise ConfigError(f"dataset: {cfg.dataset} stores no next.reward; algo.{key} needs it")
            out["offline"] = (obs, actions, demos.reward.to(device), demos.episode_index.to(device))
    return out


def initial_policy(cfg: DictConfig, env: Any, resume_ckpt: Path | None = None) -> Policy:
    """The checkpoint's policy when resuming (its architecture, whatever policy= says), else the
    one ``init_policy`` points to, checked against the env, else a fresh one."""
    if resume_ckpt is not None:
        return Policy.from_pretrained(resume_ckpt / "policy")
    if not cfg.get("init_policy"):
        return Policy(policy_config_for(cfg, env))
    return _checked_policy("init_policy", cfg.init_policy, cfg, env, cfg.get("init_head_options"))


def score_executed_actions(policy: Policy, env: Any, algo_cfg: PPOConfig) -> None:
    """``algo.score_executed_only``: the head's log-probs leave out the actions the env never runs."""
    if not algo_cfg.score_executed_only:
        return
    execute, chunk = int(env.execute), int(env.chunk)
    if execute >= chunk:
        raise ConfigError(f"algo.score_executed_only needs env.execute below env.chunk ({chunk}): every action of "
                          f"the chunk runs (env.execute={execute}), so there is nothing to leave out")
    policy.head.set_executed(execute)


def build_env(env_cfg: DictConfig) -> Any:
    """Instantiate the training env node (with its ``train_kwargs``); a failure becomes a ConfigError that names the
    env and why."""
    env_cfg = env_config(env_cfg, training=True)
    try:
        return instantiate(env_cfg)
    except Exception as err:  # Hydra wraps the factory's error; keep its message, drop the noise
        cause = err.__cause__ or err
        raise ConfigError(f"env: cannot build {env_cfg.get('id')!r} with {env_cfg.get('_target_')}: {cause}") from err


def _run_dir(cfg: DictConfig) -> tuple[Path, Path | None]:
    """The run folder, and the checkpoint to resume from (None for a fresh run)."""
    if cfg.resume:
        ckpt = resolve_checkpoint(cfg.resume)
        if not (ckpt / "train_state.pt").is_file():
            raise ConfigError(f"resume: {ckpt} is not a training checkpoint (no train_state.pt)")
        return ckpt.parent.parent, ckpt
    name = cfg.name or f"{cfg.env.id}-{cfg.algo.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(cfg.runs_dir) / name
    if (run_dir / "checkpoints").exists():
        raise ConfigError(f"name: run folder {run_dir} already has checkpoints; pass resume={run_dir} or a new name")
    return run_dir, None


@dataclass
class TrainingSession:
    """Everything a run needs, built and ready: ``trainer.train(total)`` runs it."""

    cfg: DictConfig
    run_dir: Path
    env: Any
    policy: Policy
    critic: ValueCritic
    algo: PPO
    source: LocalRollouts | GroupRollouts
    logger: RunLogger
    trainer: Trainer

    def close(self) -> None:
        self.logger.close()
        self.env.close()


def build_training(cfg: DictConfig) -> TrainingSession:
    """Resolve the run folder (fresh or resumed), seed, and build env, policy, critic, algorithm."""
    torch.set_num_threads(int(cfg.torch_threads))
    run_dir, resume_ckpt = _run_dir(cfg)
    if resume_ckpt is not None:
        # A resumed run continues with the config it was started with (total_steps may grow).
        saved = OmegaConf.load(resume_ckpt / "run_config.yaml")
        saved.total_steps, saved.resume = cfg.total_steps, cfg.resume
        cfg = saved  # type: ignore[assignment]
    # Validate and build what can fail on a bad config before anything is written.
    algo_cfg = _algo_config(cfg)
    seed_everything(int(cfg.seed))
    env_cfg = OmegaConf.merge(cfg.env, {"seed": int(cfg.env.seed) + int(cfg.seed)})
    env = build_env(env_cfg)
    try:
        policy = initial_policy(cfg, env, resume_ckpt).to(cfg.device)
        score_executed_actions(policy, env, algo_cfg)
        aux = auxiliary_inputs(cfg, algo_cfg, env, seed=int(cfg.seed))
    except Exception:
        env.close()
        raise
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.name = run_dir.name
    if isinstance(policy.config, PolicyConfig):
        # The policy trained, not the policy= default: init_policy / resume replace the architecture, and the
        # written config would otherwise name a head the run never had.
        cfg.policy = OmegaConf.structured(policy.config)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    critic_cfg = CriticConfig(**OmegaConf.to_container(cfg.critic, resolve=True))
    privileged = getattr(env, "obs_shapes", {}).get(OBS_PRIVILEGED)
    if critic_cfg.use_privileged and privileged is None:
        env.close()
        raise ConfigError(f"critic.use_privileged: the env {cfg.env.id} has no {OBS_PRIVILEGED!r} observation "
                          "(for our arm: env.kwargs.privileged=true)")
    critic = ValueCritic(env.state_dim, critic_cfg, privileged_dim=privileged[0] if privileged else 0).to(cfg.device)
    offline = aux.pop("offline", None)
    try:
        algo = PPO(policy, critic, algo_cfg, num_envs=env.num_envs, total_steps=int(cfg.total_steps), **aux)
    except ValueError as err:
        env.close()
        raise ConfigError(str(err)) from err
    offline_metrics: list[dict[str, float]] = []
    if offline is not None and resume_ckpt is None:
        offline_metrics = offline_phase(algo_cfg, policy, critic, algo, offline, aux["reference"], int(cfg.seed))
    state: dict[str, Any] = {"step": 0, "iteration": 0, "policy_version": 0}
    if resume_ckpt is not None:
        state = load_training_state(resume_ckpt, policy, critic)
        algo.load_state_dict(state["algo"])
    source = experience_source(cfg, algo_cfg, env, seed=int(env_cfg.seed) + int(state["step"]))
    source.policy_version = int(state["policy_version"])
    logger = RunLogger(run_dir, OmegaConf.to_container(cfg, resolve=True), cfg.logger,
                       resume_step=None if resume_ckpt is None else int(state["step"]))
    behaviour = aux["teacher"] if algo_cfg.act_with == "teacher" else None
    trainer = Trainer(policy, critic, algo, source, run_dir, cfg, logger, start_step=int(state["step"]),
                      evaluator=periodic_evaluator(cfg), behaviour=behaviour)
    for row in offline_metrics:
        logger.log(0, row)
    trainer.iteration = int(state["iteration"])
    trainer.elapsed_s = float(state.get("elapsed_s", 0.0))  # checkpoints before it was kept have none
    trainer.best_return = float(state.get("best_return", -float("inf")))
    return TrainingSession(cfg, run_dir, env, policy, critic, algo, source, logger, trainer)


def offline_phase(algo_cfg: PPOConfig, policy: Policy, critic: ValueCritic, algo: PPO, offline: tuple,
                  reference: Policy | None, seed: int) -> list[dict[str, float]]:
    """o2o before any env step: the critic on the demos' returns, then offline policy improvement (Uni-O4).
    One metrics row per offline improvement round (the critic's metrics in the first)."""
    obs, actions, reward, episode = offline
    critic_metrics: dict[str, float] = {}
    if algo_cfg.critic_pretrain_steps > 0:
        returns = discounted_returns(reward.cpu(), episode.cpu(), algo_cfg.gamma)
        critic_metrics = pretrain_critic(critic, policy.normalizer, obs, returns.to(reward.device),
                                         algo.return_normalizer, algo_cfg.critic_pretrain_steps,
                                         algo_cfg.critic_learning_rate or algo_cfg.learning_rate,
                                         algo_cfg.bc_batch_size, seed=seed)
    if algo_cfg.offline_improve_iters == 0:
        return [critic_metrics] if critic_metrics else []
    rows = improve_offline(policy, obs, actions, reward, episode, algo_cfg, seed=seed)
    if reference is not None and any(r.get("offline/accepted") for r in rows):
        # The anchor keeps the policy near where online training starts: the improved policy, not the BC one.
        reference.load_state_dict(policy.state_dict())
    rows[0] = critic_metrics | rows[0]
    return rows


def experience_source(cfg: DictConfig, algo_cfg: PPOConfig, env: Any, seed: int) -> LocalRollouts | GroupRollouts:
    """Continuing rollouts of n_steps for GAE; whole episodes from shared initial states for grpo / gdpo."""
    train_kwargs = cfg.env.get("train_kwargs") or {}
    run_wide = train_kwargs.get("reset_curriculum_scope", "env") == "run"
    if algo_cfg.advantage == "gae":
        curriculum = None
        if run_wide:  # one failure-prioritized draw for all the envs (robopolicy/reset_curriculum.py, "Scope")
            try:
                curriculum = RunWideCurriculum(env)  # the envs' sampler settings, from their kwargs
            except ValueError as err:
                raise ConfigError(str(err)) from err
        return LocalRollouts(env, n_steps=algo_cfg.n_steps, seed=seed,
                             after_collect=None if curriculum is None else curriculum.sync)
    if run_wide:
        raise ConfigError(f"env.train_kwargs.reset_curriculum_scope=run: needs algo.advantage=gae, got "
                          f"{algo_cfg.advantage} (its groups reset from shared seeds)")
    if not cfg.env.get("max_episode_steps"):
        raise ConfigError(f"env.max_episode_steps: required for algo.advantage={algo_cfg.advantage} (episode length)")
    try:
        return GroupRollouts(env, int(cfg.env.max_episode_steps), algo_cfg.group_size, seed=seed,
                             decoupled=algo_cfg.advantage == "gdpo")
    except ValueError as err:
        raise ConfigError(str(err)) from err


def eval_deterministic(cfg: DictConfig) -> bool:
    """Whether evaluations score the policy's mean / mode; true for run configs written before the key existed
    (a resumed run keeps its saved config)."""
    return bool(cfg.get("eval_deterministic", True))


def eval_all_configs(cfg: DictConfig) -> bool:
    """Whether evaluations sweep a single-task Meta-World env's configurations; false for run configs written
    before the key existed."""
    return bool(cfg.get("eval_all_configs", False))


def periodic_evaluator(cfg: DictConfig):
    """Evaluation during training on one fixed set of seeds, apart from training's and the final
    evaluation's: every point of a curve then scores the same initial states, so a change between
    points is the policy's, not the draw of tasks (common random numbers). Deterministic unless
    ``eval_deterministic`` is false; sampled evaluations also draw the policy's noise from a fixed seed."""
    episodes = max(1, int(cfg.eval_episodes))
    deterministic, all_configs = eval_deterministic(cfg), eval_all_configs(cfg)
    if all_configs:  # a wrong env or episode count fails here, not at the first evaluation
        try:
            check_all_configs(cfg.env, episodes)
        except ValueError as err:
            raise ConfigError(f"eval_all_configs: {err}") from err

    stop_success, confirm = cfg.get("stop_success"), int(cfg.get("stop_confirm", 0) or 0)
    if confirm < 0 or (confirm and stop_success is None):
        raise ConfigError(f"stop_confirm={confirm}: expected a count >= 0 of repeated evaluations, and stop_success "
                          "to confirm")

    def score(policy: Policy, seed: int) -> dict[str, Any]:
        return evaluate(policy, cfg.env, episodes=episodes, seed=seed, deterministic=deterministic,
                        all_configs=all_configs).summary()

    def run(policy: Policy) -> dict[str, float]:
        metrics = eval_metrics(score(policy, 20_000))
        if confirm and metrics.get("eval/success", -1.0) >= float(stop_success):
            # the same number of episodes each: the mean of the rates is the rate over all of them
            rates = [metrics["eval/success"]] + [score(policy, 20_000 + 1_000 * i)["success_rate"]
                                                 for i in range(1, confirm + 1)]
            metrics["eval/confirmed_success"] = sum(rates) / len(rates)
        return metrics

    return run


def run_training(cfg: DictConfig, show_progress: bool = True) -> RunResult:
    """Train as ``cfg`` says; write config, metrics, checkpoints and plot under runs/<name>/."""
    if _algo_name(cfg) == "bc":
        from robopolicy.bc_run import run_bc  # imports this module: import at call time

        return run_bc(cfg, show_progress=show_progress)
    session = build_training(cfg)
    cfg, run_dir, trainer = session.cfg, session.run_dir, session.trainer
    try:
        final = trainer.train(int(cfg.total_steps), show_progress=show_progress)
        has_ckpt = (run_dir / "checkpoints" / "LATEST").is_file()
        ckpt = resolve_checkpoint(run_dir) if has_ckpt else trainer.save()
        eval_summary = None
        if int(cfg.eval_episodes) > 0:
            # The best periodic-eval policy when there is one (fresh seeds here), else the last.
            best = run_dir / "checkpoints" / "best"
            policy, which = session.policy, f"last (step {trainer.step})"
            if cfg.keep_best and (best / "policy").is_dir():
                policy = Policy.from_pretrained(best / "policy")
                which = f"best (step {(best / 'step.txt').read_text().split()[0]})"
            video = run_dir / "videos" / f"eval_step_{trainer.step}.mp4" if cfg.video else None
            result = evaluate(policy, cfg.env, episodes=int(cfg.eval_episodes), seed=10_000 + int(cfg.seed),
                              deterministic=eval_deterministic(cfg), video_path=video,
                              all_configs=eval_all_configs(cfg))
            eval_summary = result.summary() | {"policy": which}
            session.logger.log(trainer.step, eval_metrics(eval_summary) | {"eval/is_final": 1.0})
    finally:
        session.close()
    plot = plot_learning_curve(run_dir / "metrics.jsonl", run_dir / "learning_curve.png", run_dir.name)
    return RunResult(run_dir, ckpt, final, eval_summary, plot)
