"""A curriculum over a task's finite set of reset configurations: draw more often the ones the policy fails.

Meta-World's MT1 draws each episode's goal/object configuration from 50 fixed ones. A policy that succeeds on 49
and fails one fails 2-3 episodes of a 30-episode evaluation, yet meets that configuration in ~1 training episode
of 50, so PPO rarely sees the failure (docs/finetuning_results.md, "Reach, the third task"). Prioritized level replay
(Jiang et al., 2021) fixes this by replaying the levels with the highest learning signal; here the score is the
failure rate, tracked per configuration as an exponential moving average of episode success:

    p_i = (1 - weight) / n + weight * f_i / sum_j f_j,      f_i = 1 - success_ema_i

The uniform share keeps every configuration visited (so an estimate cannot freeze) and bounds how far training
drifts from the task's own distribution; ``weight`` 0 is plain uniform sampling. Evaluation must stay uniform:
configs pass it as ``env.train_kwargs`` (the training env only, see ``robopolicy.evaluate.env_config``).

Priority. With the failure share above (``priority="failure"``) the draw leans on a configuration only once the
others are mostly solved: while most fail, the shares are near equal (session 45 measured the hardest one at 1.5x
uniform first after 370-690k steps of a 1M run). ``priority="rank"`` scores a configuration by its rank instead, as
prioritized level replay does: h_i = 1 / rank_i (1 = the highest failure rate; tied configurations share their ranks'
mean score), so the hardest one holds the same share of the prioritized part however close the rates are. A
configuration the policy never solves can then take that share for the whole run (session 46: on pick-place,
configuration 4 was the most drawn in most rollouts, at 5-16x uniform, and the runs fell 8-20 points behind those
with the failure share). ``priority="learnability"`` scores h_i = s_i (1 - s_i), the variance of a success: highest
where the policy solves a configuration half the time, where PPO's advantages carry the most signal, and low both
where it always succeeds and where it never does.
Every score is tempered, h_i ** (1 / temperature), before it is normalized: below 1 it sharpens, above 1 it flattens.

Scope. With ``reset_curriculum_scope="env"`` (the default) each env learns from its own episodes: with 8 envs of
200-step episodes, each meets a configuration once per ~80,000 steps of the run, so an estimate lags the policy by
that much. ``"run"`` pools every env's episodes in one ``RunWideCurriculum`` on the learner, which folds them in
after each rollout and pushes the probabilities back: a configuration's estimate then moves every ~10,000 steps.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

PRIORITIES = ("failure", "rank", "learnability")


def _rank_scores(fail: np.ndarray) -> np.ndarray:
    """1 / rank by failure rate, highest first; a tie shares the mean score of the ranks it spans (so equal rates
    draw equally, and a sampler that has seen no episode draws uniformly)."""
    order = np.argsort(-fail, kind="stable")
    by_rank = 1.0 / np.arange(1, len(fail) + 1)
    _, group = np.unique(fail[order], return_inverse=True)
    shared = np.bincount(group, weights=by_rank) / np.bincount(group)
    score = np.empty(len(fail))
    score[order] = shared[group]
    return score


class FailurePrioritizedSampler:
    """Draw one of ``n`` reset configurations by a priority over its recent success: its failure rate (the
    default), the rank of that rate, or its learnability (see "Priority" above).

    Each env process keeps its own sampler and learns from its own episodes; the estimates start at ``prior``
    success and are not checkpointed (a resumed run re-learns them within a few visits per configuration)."""

    def __init__(self, n: int, weight: float, ema: float = 0.3, prior: float = 0.5, priority: str = "failure",
                 temperature: float = 1.0) -> None:
        if n < 1:
            raise ValueError(f"reset_curriculum: needs at least one reset configuration, got {n}")
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"reset_curriculum: weight must be in [0, 1], got {weight}")
        if not 0.0 < ema <= 1.0:
            raise ValueError(f"reset_curriculum: ema must be in (0, 1], got {ema}")
        if priority not in PRIORITIES:
            raise ValueError(f"reset_curriculum_priority: one of {PRIORITIES}, got {priority!r}")
        if not temperature > 0.0:
            raise ValueError(f"reset_curriculum_temperature: must be above 0, got {temperature}")
        self.weight, self.ema = float(weight), float(ema)
        self.priority, self.temperature = priority, float(temperature)
        self.success = np.full(n, float(prior))
        self.visits = np.zeros(n, np.int64)

    def probabilities(self) -> np.ndarray:
        n = len(self.success)
        fail = 1.0 - self.success
        if self.priority == "rank":
            score = _rank_scores(fail)
        elif self.priority == "learnability":
            score = fail * self.success
        else:
            score = fail
        score = score ** (1.0 / self.temperature)
        total = score.sum()
        prioritized = score / total if total > 0 else np.full(n, 1.0 / n)
        return (1.0 - self.weight) / n + self.weight * prioritized

    def draw(self, rng: np.random.Generator) -> int:
        return int(rng.choice(len(self.success), p=self.probabilities()))

    def update(self, config: int, success: bool) -> None:
        """Fold one finished episode of ``config`` into its estimate."""
        self.success[config] += self.ema * (float(success) - self.success[config])
        self.visits[config] += 1


class RunWideCurriculum:
    """One ``FailurePrioritizedSampler`` over every env of a vector env (``reset_curriculum_scope="run"``).

    ``sync()``, after each rollout, drains the (configuration, success) pairs of the episodes each env finished,
    folds them in and sets every env's draw probabilities; it returns metrics naming the most-drawn configuration
    (``curriculum/hardest_config``: the hardest one under the failure and rank priorities, not under learnability)."""

    def __init__(self, env: Any) -> None:
        try:
            samplers = env.call("reset_curriculum_sampler")
        except AttributeError as err:
            raise ValueError("reset_curriculum_scope=run: the training env has no reset curriculum (set "
                             "env.train_kwargs.reset_curriculum to a weight above 0)") from err
        sizes = {len(s.success) for s in samplers}
        if len(sizes) != 1:
            raise ValueError(f"reset_curriculum_scope=run: the envs hold different numbers of configurations {sizes}")
        self.env = env
        # The envs' own settings (weight, priority, temperature: their kwargs) with estimates at the prior: under
        # scope "run" an env folds in no episode itself. A copy, so a SyncVectorEnv's env 0 keeps its own.
        self.sampler = copy.deepcopy(samplers[0])

    def sync(self) -> dict[str, float]:
        for outcomes in self.env.call("drain_reset_outcomes"):
            for config, success in outcomes:
                self.sampler.update(config, success)
        p = self.sampler.probabilities()
        self.env.call("set_reset_probabilities", p)
        hardest = int(np.argmax(p))
        return {"curriculum/hardest_config": float(hardest), "curriculum/hardest_p": float(p[hardest]),
                "curriculum/mean_success": float(self.sampler.success.mean())}
