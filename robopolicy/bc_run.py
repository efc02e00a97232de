"""`robopolicy train algo=bc dataset=<dir>`: imitation learning with the PPO run-folder contract.

    runs/<name>/config.yaml               the resolved config
    runs/<name>/metrics.jsonl             loss/bc, bc/lr, bc/grad_norm every log_every steps;
                                          eval/return (eval/success) every eval_every steps and at the end
    runs/<name>/checkpoints/step_*/policy the EMA weights (Policy.from_pretrained); train_state.pt
                                          holds raw weights, EMA, optimizer, schedule for resume=
    runs/<name>/learning_curve.png

``step`` in this file counts gradient steps, not env steps. The env supplies state_dim,
action_dim, chunk and action bounds exactly as for PPO; the dataset must match them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from robopolicy.algorithms.bc import BC, BCConfig, fill_padded_actions, set_obs_stats
from robopolicy.checkpoint import load_policy, load_train_state, resolve_checkpoint, save_best, save_checkpoint
from robopolicy.encoders.image import image_key
from robopolicy.evaluate import eval_metrics, evaluate
from robopolicy.policy import Policy, PolicyConfig
from robopolicy.run_logger import RunLogger, plot_learning_curve
from robopolicy.train_run import (
    ConfigError,
    RunResult,
    _run_dir,
    build_env,
    eval_all_configs,
    eval_deterministic,
    periodic_evaluator,
    policy_config_for,
    seed_everything,
)
from robopolicy.types import OBS_STATE, TASK


def bc_config(cfg: DictConfig) -> BCConfig:
    data = OmegaConf.to_container(cfg.algo, resolve=True)
    try:
        return BCConfig(**data)  # type: ignore[arg-type]
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err)) from err


def check_demos(demos: Any, env: Any, root: str, env_name: str = "the env") -> None:
    """Shapes of the dataset against the env, and finite values; ConfigError naming both shapes."""
    if OBS_STATE not in demos.obs:
        raise ConfigError(f"dataset: {root} has no {OBS_STATE!r} (keys: {sorted(demos.obs)})")
    state, actions = demos.obs[OBS_STATE], demos.actions
    want_state, want_actions = (int(env.state_dim),), (int(env.chunk), int(env.action_dim))
    if state.ndim != 2 or actions.ndim != 3 or tuple(state.shape[1:]) != want_state \
            or tuple(actions.shape[1:]) != want_actions or state.shape[0] != actions.shape[0]:
        raise ConfigError(
            f"dataset: {root} has {OBS_STATE} {tuple(state.shape)} and action {tuple(actions.shape)}; "
            f"env {env_name} expects {OBS_STATE} (N, {want_state[0]}) and action (N, H={want_actions[0]}, "
            f"A={want_actions[1]})")
    if actions.shape[0] == 0:
        raise ConfigError(f"dataset: {root} holds no samples")
    for key, value in {OBS_STATE: state, "action": actions}.items():
        if not torch.isfinite(value).all():
            raise ConfigError(f"dataset: {root} {key} contains NaN or Inf")


def check_dataset_paths(dataset: Any) -> None:
    """``dataset`` is one folder or a list of folders; ConfigError naming the first that does not exist."""
    from robopolicy.data.demos import dataset_roots  # imports lerobot only inside its loaders

    roots = dataset_roots(dataset)
    if not roots:
        raise ConfigError("dataset: an empty list (give a LeRobotDataset directory or a list of them)")
    for root in roots:
        if not Path(root).exists():
            raise ConfigError(f"dataset: {root} does not exist")


def load_demo_tensors(cfg: DictConfig, env: Any, device: torch.device) -> tuple[Any, dict[str, torch.Tensor], torch.Tensor]:
    """``cfg.dataset`` as chunks for ``env``, checked: (demos, obs on device, actions (N, H, A) padding filled)."""
    if not cfg.get("dataset"):
        raise ConfigError("dataset: required (a LeRobotDataset directory)")
    check_dataset_paths(cfg.dataset)
    from robopolicy.data.demos import load_demos  # lerobot is imported only when demos are used

    try:
        demos = load_demos(cfg.dataset, chunk=int(env.chunk))
    except (FileNotFoundError, ValueError) as err:  # the loader names what is wrong with the folder
        raise ConfigError(f"dataset: {err}") from err
    check_demos(demos, env, str(cfg.dataset), str(cfg.env.id))
    obs = {k: v.to(device) for k, v in demos.obs.items() if isinstance(v, torch.Tensor)}
    actions = fill_padded_actions(demos.actions, getattr(demos, "action_is_pad", None)).to(device)
    return demos, obs, actions


def fill_encoder_from_demos(config: PolicyConfig, demos: Any) -> PolicyConfig:
    """Complete the encoder config from the dataset: each camera's (C, H, W) when ``image.shape`` is empty,
    and the task vocabulary of a learned task embedding when ``language.tasks`` is empty."""
    image, language = config.encoder.image, config.encoder.language
    for cam in image.cameras:
        if image_key(cam) not in demos.obs:
            cams = sorted(k for k in demos.obs if k.startswith("observation.images."))
            raise ConfigError(f"policy.encoder.image.cameras: dataset has no {image_key(cam)!r} (cameras: {cams})")
        shape = list(demos.obs[image_key(cam)].shape[1:])
        if image.shape and list(image.shape) != shape:
            raise ConfigError(f"policy.encoder.image.shape: {list(image.shape)}, but the dataset's "
                              f"{image_key(cam)} frames are {shape} (C, H, W)")
        image.shape = shape
    if language.kind == "embedding" and not language.tasks:
        language.tasks = sorted(set(demos.task))
    return config


def warm_start_from(policy: Policy, path: str) -> None:
    """Copy every weight of the policy at ``path`` whose name and shape match ``policy``'s (a camera student
    from its privileged teacher: state MLP, head, scaler); the rest (e.g. the camera estimator) stay fresh."""
    try:
        source = load_policy(path).state_dict()
    except (TypeError, ValueError, FileNotFoundError) as err:
        raise ConfigError(f"init_policy: {err}") from err
    own = policy.state_dict()
    matched = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    head = [k for k in own if k.startswith("head.")]
    if not all(k in matched for k in head):
        raise ConfigError(f"init_policy: {path}'s head does not fit this policy's (name and shape of every head.* "
                          f"weight must match; policy={policy.config.head})")
    policy.load_state_dict(matched, strict=False)
    fresh = sorted({k.split(".")[1] if k.startswith("encoder.") else k.split(".")[0] for k in set(own) - set(matched)})
    print(f"init_policy: {len(matched)}/{len(own)} tensors from {path}; fresh: {fresh}")


class DemoSampler:
    """Minibatches of demo chunks, reshuffled every epoch (without replacement within one)."""

    def __init__(self, obs: dict[str, torch.Tensor], actions: torch.Tensor, batch_size: int, seed: int):
        self.obs, self.actions = obs, actions
        self.n, self.batch_size = int(actions.shape[0]), min(batch_size, int(actions.shape[0]))
        self.gen = torch.Generator().manual_seed(seed)
        self.perm, self.pos = torch.randperm(self.n, generator=self.gen), 0

    def next(self) -> dict[str, Any]:
        if self.pos + self.batch_size > self.n:
            self.perm, self.pos = torch.randperm(self.n, generator=self.gen), 0
        idx = self.perm[self.pos:self.pos + self.batch_size].to(self.actions.device)
        self.pos += self.batch_size
        # Instructions are a numpy array of strings (task), everything else a tensor.
        obs = {k: v[idx] if isinstance(v, torch.Tensor) else v[idx.cpu().numpy()] for k, v in self.obs.items()}
        return {"obs": obs, "actions": self.actions[idx]}


def _resolve(cfg: DictConfig) -> tuple[DictConfig, Path, Path | None]:
    run_dir, resume_ckpt = _run_dir(cfg)
    if resume_ckpt is not None:
        # Continue with the config the run started with; algo.steps may grow when algo=bc is given again.
        saved = OmegaConf.load(resume_ckpt / "run_config.yaml")
        if cfg.algo.get("name") == "bc":
            saved.algo.steps = cfg.algo.steps
        saved.resume = cfg.resume
        cfg = saved  # type: ignore[assignment]
    return cfg, run_dir, resume_ckpt


def run_bc(cfg: DictConfig, show_progress: bool = True) -> RunResult:
    """Behaviour cloning from ``cfg.dataset`` with ``cfg.policy``'s head; evaluates in ``cfg.env``."""
    torch.set_num_threads(int(cfg.torch_threads))
    cfg, run_dir, resume_ckpt = _resolve(cfg)
    if not cfg.get("dataset"):
        raise ConfigError("dataset: required for algo=bc (a LeRobotDataset directory)")
    check_dataset_paths(cfg.dataset)
    algo_cfg = bc_config(cfg)
    seed_everything(int(cfg.seed))
    env = build_env(OmegaConf.merge(cfg.env, {"seed": int(cfg.env.seed) + int(cfg.seed)}))
    device = torch.device(cfg.device)
    try:
        demos, obs, actions = load_demo_tensors(cfg, env, device)
        policy = Policy(fill_encoder_from_demos(policy_config_for(cfg, env), demos))
        extra = policy.config.encoder.obs_keys()
        if extra and (int(cfg.eval_episodes) > 0 or algo_cfg.eval_every > 0):  # fail now, not after training
            observed = set(env.reset(seed=int(cfg.seed)))
            missing = [k for k in extra if k not in observed]
            if missing:
                raise ConfigError(f"policy.encoder: reads {missing}, which env {cfg.env.id} does not observe "
                                  f"(it observes {sorted(observed)}); train with eval_episodes=0 algo.eval_every=0")
    finally:
        env.close()
    policy = policy.to(device)
    if policy.config.encoder.language.kind != "none":
        obs[TASK] = np.asarray(demos.task)  # type: ignore[assignment]  (strings, indexed by DemoSampler)
    set_obs_stats(policy, getattr(demos, "stats", None), obs)
    if resume_ckpt is None and cfg.get("init_policy"):
        # After the dataset's statistics: the copied layers were trained on the source's normalized inputs,
        # so its normalizer must win wherever it has the key (a new key keeps the dataset's statistics).
        warm_start_from(policy, cfg.init_policy)
    if resume_ckpt is None and getattr(policy.head.config, "binning", None) == "quantile":
        policy.head.fit_bins(policy.scaler.from_env(actions))  # token bins follow the demos' action density
    bc = BC(policy, algo_cfg)
    bc.sync_ema()
    state: dict[str, Any] = {"step": 0, "best_return": -float("inf")}
    if resume_ckpt is not None:
        state = load_train_state(resume_ckpt)
        bc.load_state_dict(state["algo"])

    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.name = run_dir.name
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    logger = RunLogger(run_dir, OmegaConf.to_container(cfg, resolve=True), cfg.logger,
                       resume_step=None if resume_ckpt is None else int(state["step"]))
    sampler = DemoSampler(obs, actions, algo_cfg.batch_size, seed=int(cfg.seed) + int(state["step"]))
    evaluator = periodic_evaluator(cfg)
    step, best = int(state["step"]), float(state.get("best_return", -float("inf")))
    total, episodes = algo_cfg.steps, int(cfg.eval_episodes)

    def save() -> Path:
        train_state = {"step": step, "algo": bc.state_dict(), "best_return": best}
        path = save_checkpoint(run_dir, step, bc.eval_policy, None, train_state, cfg)
        plot_learning_curve(run_dir / "metrics.jsonl", run_dir / "learning_curve.png", run_dir.name)
        return path

    def due(every: int) -> bool:
        return every > 0 and step % every == 0

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]}  eval return {task.fields[ret]}"), TimeElapsedColumn(),
               TimeRemainingColumn())
    ckpt: Path | None = None
    eval_summary = None
    sums: dict[str, float] = {}
    count, t0, last = 0, time.perf_counter(), {}
    try:
        with Progress(*columns, disable=not show_progress) as bar:
            task = bar.add_task("bc", total=total, completed=step, loss="-", ret="-")
            while step < total:
                metrics = bc.update(sampler.next())
                step += 1
                count += 1
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + v
                row: dict[str, float] = {}
                if due(algo_cfg.log_every) or step == total:
                    row = {k: v / count for k, v in sums.items()}
                    row["time/updates_per_s"] = count / (time.perf_counter() - t0)
                    sums, count, t0 = {}, 0, time.perf_counter()
                if due(algo_cfg.eval_every) and step < total and episodes > 0:
                    row |= evaluator(bc.eval_policy)
                    if cfg.keep_best and row["eval/return"] > best:
                        best = row["eval/return"]
                        save_best(run_dir, bc.eval_policy, step, best)
                    bar.update(task, ret=f"{row['eval/return']:.1f}")
                if row:
                    logger.log(step, row)
                    last = row
                    bar.update(task, loss=f"{row.get('loss/bc', float('nan')):.4f}")
                bar.update(task, completed=step)
                if due(algo_cfg.checkpoint_every) and step < total:
                    save()
        if episodes > 0:
            result = evaluate(bc.eval_policy, cfg.env, episodes=episodes, seed=10_000 + int(cfg.seed),
                              deterministic=eval_deterministic(cfg), all_configs=eval_all_configs(cfg))
            eval_summary = result.summary() | {"policy": f"last (step {step})"}
            final = eval_metrics(eval_summary)
            logger.log(step, final)
            last = last | final
    finally:
        logger.close()
    ckpt = save() if step > int(state["step"]) or resume_ckpt is None else resolve_checkpoint(run_dir)
    plot = plot_learning_curve(run_dir / "metrics.jsonl", run_dir / "learning_curve.png", run_dir.name)
    return RunResult(run_dir, ckpt, last, eval_summary, plot)
