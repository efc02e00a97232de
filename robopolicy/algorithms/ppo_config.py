"""PPOConfig: every hyperparameter of the shared PPO objective (``algo=ppo``, ``o2o``, ``distill``), checked on
construction so a bad value stops the run with its key named."""

from __future__ import annotations

from dataclasses import dataclass, field

from robopolicy.heads.base import DIVERGENCE_KINDS


@dataclass
class PPOConfig:
    name: str = "ppo"
    """Algorithm name (the algo= config group option)."""
    n_steps: int = 2048
    """Policy steps per env in one rollout (T)."""
    batch_size: int = 64
    """Minibatch size (transitions)."""
    n_epochs: int = 10
    """Passes over each rollout."""
    learning_rate: float = 3e-4
    """Adam step size of the actor (and of the critic unless critic_learning_rate is set)."""
    critic_learning_rate: float | None = None
    """Separate critic step size; None: same as learning_rate."""
    anneal_lr: bool = False
    """Linearly decay learning rates to 0 over the run."""
    gamma: float = 0.99
    """Discount per env step (a chunk of n steps is discounted by gamma ** n)."""
    gae_lambda: float = 0.95
    """GAE trade-off between bias (0) and variance (1)."""
    clip_coef: float = 0.2
    """PPO ratio clip epsilon (of the last inner decision when clip_coef_first is set)."""
    clip_coef_first: float | None = None
    """DPPO's per-decision clip: epsilon of the first (noisiest) inner decision, rising exponentially to
    clip_coef at the last; None: clip_coef for every decision."""
    clip_schedule_rate: float = 3.0
    """Curvature of that rise (DPPO: 3); larger keeps more decisions near clip_coef_first."""
    clip_vf: float | None = None
    """Value clipping around the old value; None: unclipped."""
    min_std_final: float | None = None
    """Anneal a diffusion head's exploration floor (min_std) linearly from its value at the start to this at
    the end of the run; set after each update, so every rollout is scored under the floor it acted with.
    None: fixed."""
    score_executed_only: bool = False
    """With env.execute = n < env.chunk: the log-probs (hence PPO's ratio) leave out the last inner decision's
    dimensions of the H - n actions the env never runs (ActionHead.set_executed): their noise reaches no reward,
    so their score term adds gradient variance and no signal. approx_kl then covers the scored dimensions only.
    Needs env.execute < env.chunk."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    target_kl: float | None = None
    """Stop the update's epochs once approx KL > 1.5 * target_kl; None: never."""
    normalize_advantage: bool = True
    """Normalize advantages within each minibatch."""
    normalize_reward: bool = True
    """Scale rewards by the running std of the discounted return."""
    adam_eps: float = 1e-5
    """Adam epsilon."""
    pg_coef: float = 1.0
    """Weight of the clipped policy-gradient term (0: no reward signal, e.g. pure distillation)."""
    critic_warmup_updates: int = 0
    """First updates that train only the critic (fine-tuning a pretrained actor with a fresh critic)."""
    actor_lr_warmup_updates: int = 0
    """The actor's step size ramps linearly over its first N updates (lr/N, 2 lr/N, ..., lr): a pretrained actor's
    first Adam steps (sign-like, every weight moved by ~lr at once) otherwise undo its pretraining before the
    critic has seen its returns. 0: full lr from the first update."""
    critic_pretrain_steps: int = 0
    """Offline phase (o2o): critic gradient steps on the dataset= demos' discounted returns before any env step."""
    offline_improve_iters: int = 0
    """Offline policy improvement (o2o, Uni-O4; robopolicy/offline_improve.py): at most this many rounds of the pg term
    on the demo states, each kept only if the off-policy estimate beats the previous policy's; 0: off."""
    offline_q_steps: int = 2000
    """Gradient steps fitting the chunk-level Q(s, a) to the demos' Monte-Carlo returns (offline_improve_iters > 0)."""
    offline_improve_epochs: int = 4
    """Passes of the pg (+ bc) minibatch loop over one round's sampled chains."""
    offline_improve_states: int = 512
    """Demo states sampled per round; each gets offline_improve_samples chains from the current policy."""
    offline_improve_samples: int = 8
    """M chains per state: the advantage is Q(s, a_m) - mean_m Q(s, a_m) (M >= 2)."""
    offline_learning_rate: float | None = None
    """Actor step size of the offline rounds; None: learning_rate."""
    offline_ope_margin: float = 0.0
    """A round is kept only if OPE(new) > OPE(old) + margin * std(demo returns): the gate's required gain."""
    offline_q_min_heldout_ev: float = 0.0
    """Skip the rounds (policy untouched) when Q's explained variance of the held-out demo returns is below this:
    a Q that does not generalize across episodes can neither rank the policy's actions nor gate them."""
    offline_holdout_frac: float = 0.2
    """Fraction of demo episodes held out from the Q fit and the rounds, on which OPE scores the policies."""
    bc_coef: float = 0.0
    """Weight of the imitation term on the run's dataset= demos (DAPG); 0: off."""
    bc_decay: float = 1.0
    """bc_coef is multiplied by this after every update."""
    bc_batch_size: int = 256
    """Demo chunks per minibatch of the bc term."""
    anchor_coef: float = 0.0
    """Weight of the divergence to the pretrained init_policy along the rollout's traces; 0: off."""
    anchor_kind: str = "reverse_kl"
    """reverse_kl (policy || pretrained), forward_kl or js."""
    distill_coef: float = 0.0
    """Weight of the divergence to the teacher= policy on the student's own traces; 0: off."""
    distill_kind: str = "reverse_kl"
    """reverse_kl (student || teacher), forward_kl, js, or dagger (teacher actions as labels)."""
    act_with: str = "student"
    """Who collects the rollouts: student (on-policy), or teacher (distill_kind=dagger only: BC on teacher data)."""
    freeze: list[str] = field(default_factory=list)
    """Policy parameter-name prefixes kept fixed (e.g. [head, encoder.net]: a camera student keeps its teacher's
    layers and the distill term trains only its camera estimator); [] trains everything."""
    estimate_coef: float = 1.0
    """Weight of the estimate term for a camera student (policy.encoder.estimate_privileged): its privileged-state
    estimates regressed onto the rollout's observation.privileged. Ignored for other policies."""
    advantage: str = "gae"
    """gae (critic), grpo (group-relative episode return) or gdpo (per-channel group normalization)."""
    group_size: int = 8
    """Envs per group sharing one initial state (grpo / gdpo); must divide env.num_envs."""

    def __post_init__(self) -> None:
        checks = {
            "n_steps": self.n_steps >= 1, "batch_size": self.batch_size >= 1, "n_epochs": self.n_epochs >= 1,
            "learning_rate": self.learning_rate >= 0, "gamma": 0 < self.gamma <= 1,
            "gae_lambda": 0 <= self.gae_lambda <= 1, "clip_coef": self.clip_coef > 0,
            "clip_coef_first": self.clip_coef_first is None or 0 < self.clip_coef_first <= self.clip_coef,
            "clip_schedule_rate": self.clip_schedule_rate > 0,
            "min_std_final": self.min_std_final is None or self.min_std_final > 0,
            "max_grad_norm": self.max_grad_norm > 0, "target_kl": self.target_kl is None or self.target_kl > 0,
            "critic_warmup_updates": self.critic_warmup_updates >= 0,
            "actor_lr_warmup_updates": self.actor_lr_warmup_updates >= 0,
            "critic_pretrain_steps": self.critic_pretrain_steps >= 0,
            "offline_improve_iters": self.offline_improve_iters >= 0, "offline_q_steps": self.offline_q_steps >= 1,
            "offline_improve_epochs": self.offline_improve_epochs >= 1,
            "offline_improve_states": self.offline_improve_states >= 1,
            "offline_improve_samples": self.offline_improve_samples >= 2,
            "offline_learning_rate": self.offline_learning_rate is None or self.offline_learning_rate > 0,
            "offline_ope_margin": self.offline_ope_margin >= 0, "offline_q_min_heldout_ev": self.offline_q_min_heldout_ev <= 1,
            "offline_holdout_frac": 0 < self.offline_holdout_frac < 1, "bc_coef": self.bc_coef >= 0,
            "bc_decay": 0 <= self.bc_decay <= 1, "bc_batch_size": self.bc_batch_size >= 1,
            "anchor_coef": self.anchor_coef >= 0, "distill_coef": self.distill_coef >= 0,
            "estimate_coef": self.estimate_coef >= 0,
            "anchor_kind": self.anchor_kind in DIVERGENCE_KINDS,
            "distill_kind": self.distill_kind in (*DIVERGENCE_KINDS, "dagger"),
            "advantage": self.advantage in ("gae", "grpo", "gdpo"), "group_size": self.group_size >= 2,
            "act_with": self.act_with == "student" or (self.act_with == "teacher" and self.distill_kind == "dagger"),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            k = bad[0]
            raise ValueError(f"algo.{k}: invalid value {getattr(self, k)!r} "
                             "(n_steps, batch_size, n_epochs >= 1; 0 < gamma <= 1; 0 <= gae_lambda <= 1; "
                             "clip_coef, max_grad_norm, target_kl > 0; 0 < clip_coef_first <= clip_coef; "
                             "clip_schedule_rate > 0; coefficients >= 0; 0 <= bc_decay <= 1; "
                             "offline_*: iters >= 0, q_steps, epochs, states >= 1, samples >= 2, learning_rate > 0, "
                             "ope_margin >= 0, q_min_heldout_ev <= 1, 0 < holdout_frac < 1; "
                             f"kinds in {DIVERGENCE_KINDS} (+ dagger for distill_kind); advantage in gae, grpo, "
                             "gdpo; group_size >= 2; act_with=teacher needs distill_kind=dagger)")
