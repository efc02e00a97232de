"""Typed config schemas registered in Hydra's ConfigStore.

The YAML files under ``configs/`` compose them (``env=``, ``policy=``, ``algo=``,
``experiment=``); OmegaConf checks every key and type against these dataclasses, so a
typo stops the run with the key's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from robopolicy.algorithms.bc import BCConfig
from robopolicy.algorithms.ppo import PPOConfig
from robopolicy.critic import CriticConfig
from robopolicy.policy import PolicyConfig


@dataclass
class EnvConfig:
    _target_: str = "envs.gym_vec.make_gym_vec_env"
    """Factory that returns a BatchedEnv (the env backend swaps here: gymnasium, Isaac Lab...)."""
    id: str = MISSING
    """Environment id, e.g. Hopper-v5."""
    num_envs: int = 1
    """Parallel envs (B)."""
    vectorization: str = "sync"
    """sync (one process) or async (one process per env)."""
    chunk: int = 1
    """Action chunk length H predicted per policy step (and executed, unless ``execute`` says fewer)."""
    execute: int | None = None
    """Env steps per policy step: the first n <= H actions of each chunk (Diffusion Policy's action horizon); None: H."""
    max_episode_steps: int | None = None
    """Override the env's time limit; None keeps the registered one."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for gymnasium.make."""
    train_kwargs: dict[str, Any] = field(default_factory=dict)
    """More kwargs for the training env only (e.g. Meta-World's reset_curriculum); evaluation drops them."""
    seed: int = 0
    """Env seed (the run's seed is added to it)."""
    render_mode: str | None = None
    """None for training; rgb_array for videos."""


@dataclass
class TrainConfig:
    name: str | None = None
    """Run name: the folder runs/<name>/; None: <env id>-<algo>-<time>."""
    seed: int = 0
    """Seed of torch, numpy and the envs."""
    total_steps: int = 1_000_000
    """Env steps to train for."""
    device: str = "cpu"
    """Torch device of the learner."""
    torch_threads: int = 1
    """torch.set_num_threads: 1 is fastest for small MLPs on CPU."""
    logger: str = "wandb"
    """wandb (offline unless WANDB_MODE says otherwise) or none."""
    runs_dir: str = "runs"
    """Parent folder of run folders."""
    checkpoint_every: int = 100_000
    """Env steps between checkpoints (a final one is always written)."""
    eval_episodes: int = 10
    """Evaluation episodes at the end of training (0: skip)."""
    eval_every: int = 0
    """Env steps between evaluations during training (0: only at the end)."""
    eval_all_configs: bool = False
    """Periodic and final evaluations run each of a single-task Meta-World env's 50 configurations
    (eval_episodes a multiple of 50) instead of drawing them: the draw of configurations adds no error."""
    eval_deterministic: bool = True
    """Evaluate the policy's mean / mode (True) or the policy as it acts, sampling (False): e.g. a token
    policy at a low temperature, whose argmax can stall where a sampled token moves on."""
    keep_best: bool = True
    """Save checkpoints/best/ whenever a periodic evaluation beats the previous best."""
    stop_return: float | None = None
    """Stop training once a periodic evaluation reaches this mean return (None: never); an init_policy whose
    starting evaluation already reaches it is not trained (the run ends at step 0)."""
    video: bool = False
    """Write an mp4 of one evaluation episode at the end."""
    resume: str | None = None
    """A run folder or checkpoint folder to continue from."""
    dataset: Any = None
    """LeRobotDataset directory of demonstrations, or a list of them (loaded one after another, as if merged);
    required for algo=bc."""
    init_policy: str | None = None
    """Policy / checkpoint / run folder to start from (fine-tuning); replaces the policy= architecture."""
    init_head_options: dict[str, Any] = field(default_factory=dict)
    """Head options replaced on the loaded init_policy: fine-tuning knobs that keep weight shapes,
    e.g. {ft_steps: 2, min_std: 0.1} (diffusion) or {noise: learned, max_std: 0.3} (flow)."""
    teacher: str | None = None
    """Teacher policy / checkpoint / run folder for the distill term (algo=distill)."""
    stop_success: float | None = None
    """Stop training once a periodic evaluation reaches this success rate in [0, 1] (None: never); an init_policy
    whose starting evaluation already reaches it is not trained (the run ends at step 0)."""
    stop_confirm: int = 0
    """With stop_success: an evaluation that reaches it is repeated this many times on other evaluation seeds, and
    the run stops only if the success over all of them does (eval/confirmed_success). Stopping at the first of many
    noisy evaluations that clears a bar otherwise favours a lucky one."""
    update_obs_stats: bool | None = None
    """Keep updating the policy's observation statistics from rollouts; None: yes for a fresh policy,
    no when starting from init_policy (its statistics are what its weights were trained on)."""
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    algo: Any = MISSING


@dataclass
class EvalConfig:
    ckpt: str = MISSING
    """A run folder, checkpoint folder or policy folder."""
    episodes: int | None = None
    """Evaluation episodes; None: 10, or 50 with all_configs."""
    all_configs: bool = False
    """Single-task Meta-World: run each of the task's 50 configurations (episodes / 50 times) instead of drawing
    them; exact when the policy's deterministic action is noise-free (robopolicy.evaluate.evaluate)."""
    deterministic: bool = True
    """Use the policy's mean / mode instead of sampling."""
    zero_start: bool = False
    """Diffusion / flow heads: start the deterministic chain from zero noise instead of a draw, so the action is a
    function of the observation and an all_configs sweep is exact (robopolicy.evaluate.evaluate)."""
    video: bool = True
    """Write an mp4 of the first episode next to the checkpoint."""
    seed: int = 12345
    """Env seed for evaluation (distinct from training seeds)."""
    env: Any = None
    """Env override; None: the env the checkpoint was trained on."""
    execution: str = "chunk"
    """chunk (the env runs whole chunks), receding (first n_action_steps, then re-plan) or ensemble (ACT)."""
    n_action_steps: int | None = None
    """Actions executed per chunk for execution=receding; None: H."""
    ensemble_coeff: float = 0.01
    """m of the temporal-ensembling weights exp(-m i), i = 0 the oldest prediction (execution=ensemble)."""


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="eval_schema", node=EvalConfig)
    cs.store(group="algo", name="ppo_schema", node=PPOConfig)
    cs.store(group="algo", name="bc_schema", node=BCConfig)
    cs.store(group="env", name="env_schema", node=EnvConfig)
