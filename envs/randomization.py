"""Domain randomization for the arm envs: a typed config, a per-episode sampler, and an automatic curriculum.

Every range is given at full width; ``scale`` in [0, 1] shrinks it toward the nominal value
(1.0 for multiplicative factors, 0 for offsets):  lo' = nominal + scale * (lo - nominal). The curriculum
raises ``scale`` while the success rate stays above a threshold.

One sample (``DRSample``) is drawn at every ``reset``; its scalar parameters are reported in
``info["randomization"]`` (a dict, names in ``PARAM_NAMES``), appended to ``observation.privileged``, and
stored in demo datasets as the ``randomization`` feature.

    cfg = RandomizationConfig(enabled=True, mass=(0.5, 2.0))
    sample = sample_randomization(cfg, rng)          # DRSample
    curriculum = Curriculum(threshold=0.8); scale = curriculum.update(successes)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

# The scalar parameters of one sample, in the order of the vector form (``DRSample.vector``).
PARAM_NAMES = ("obj_mass_scale", "friction_scale", "damping_scale", "gain_scale", "action_latency", "substeps")


@dataclass
class RandomizationConfig:
    """What to randomize per episode and how widely (each range at ``scale`` = 1)."""

    enabled: bool = False
    """Off: every episode uses the nominal model, no noise, no latency."""
    scale: float = 1.0
    """Fraction of every range's width in use (0: nominal; the curriculum moves it)."""
    mass: tuple[float, float] = (0.5, 2.0)
    """Factor on the object's mass."""
    friction: tuple[float, float] = (0.6, 1.4)
    """Factor on the sliding friction of the object, the table and the fingers."""
    damping: tuple[float, float] = (0.6, 1.6)
    """Factor on every arm joint's damping."""
    actuator_gain: tuple[float, float] = (0.8, 1.2)
    """Factor on every position servo's stiffness kp (its damping follows as sqrt, keeping the damping ratio)."""
    obs_noise: float = 0.002
    """Std of Gaussian noise added to observation.state at every step."""
    obs_bias: float = 0.005
    """Std of a per-episode constant offset added to observation.state."""
    action_latency: int = 1
    """Largest action delay in control steps; each episode draws an integer in [0, action_latency]."""
    control_jitter: int = 1
    """Physics substeps per control step vary by up to this many at every step (control-rate jitter)."""
    camera_pos: float = 0.02
    """Per-axis offset (m) of every camera's position."""
    camera_rot: float = 0.03
    """Per-axis rotation (rad) of every camera."""
    light: float = 0.3
    """Factor range 1 +- light on the lights' diffuse intensity; positions move by up to light/2 m."""
    colour: float = 0.15
    """Per-channel offset of the table's, object's and socket's colours."""

    def __post_init__(self) -> None:
        for f in ("mass", "friction", "damping", "actuator_gain"):
            lo, hi = getattr(self, f)
            if not 0 < lo <= 1 <= hi:
                raise ValueError(f"randomization.{f}: need 0 < low <= 1 <= high, got ({lo}, {hi})")
            setattr(self, f, (float(lo), float(hi)))
        for f in ("obs_noise", "obs_bias", "camera_pos", "camera_rot", "light", "colour", "action_latency",
                  "control_jitter"):
            if getattr(self, f) < 0:
                raise ValueError(f"randomization.{f}: must be >= 0, got {getattr(self, f)}")
        if not 0.0 <= self.scale <= 1.0:
            raise ValueError(f"randomization.scale: must be in [0, 1], got {self.scale}")

    @classmethod
    def from_any(cls, value: RandomizationConfig | dict[str, Any] | None) -> RandomizationConfig:
        """Accept a config, a (Hydra) mapping or None (disabled); unknown keys are named in the error."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        value = dict(value)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"randomization: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, Sequence) and not isinstance(v, str) else v for k, v in value.items()})


@dataclass
class DRSample:
    """One episode's draw. Factors are 1 and offsets 0 when randomization is off."""

    obj_mass_scale: float = 1.0
    friction_scale: float = 1.0
    damping_scale: float = 1.0
    gain_scale: float = 1.0
    action_latency: int = 0
    substeps: int = 0  # nominal substeps; filled in by the env
    control_jitter: int = 0
    obs_noise: float = 0.0
    obs_bias: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (D,) per-episode offset
    camera_dpos: np.ndarray = field(default_factory=lambda: np.zeros(3))
    camera_drot: np.ndarray = field(default_factory=lambda: np.zeros(3))
    light_scale: float = 1.0
    light_dpos: np.ndarray = field(default_factory=lambda: np.zeros(3))
    colour_offset: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def vector(self) -> np.ndarray:
        """(len(PARAM_NAMES),) float32: the scalar parameters, in ``PARAM_NAMES`` order."""
        return np.array([getattr(self, n) for n in PARAM_NAMES], dtype=np.float32)

    def as_info(self) -> dict[str, Any]:
        """Everything drawn, as plain Python values (what ``info["randomization"]`` holds)."""
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()}


def _factor(rng: np.random.Generator, rng_range: tuple[float, float], scale: float) -> float:
    lo, hi = rng_range
    return float(rng.uniform(1.0 + scale * (lo - 1.0), 1.0 + scale * (hi - 1.0)))


def sample_randomization(cfg: RandomizationConfig, rng: np.random.Generator, state_dim: int) -> DRSample:
    """Draw one episode's parameters (always the same number of draws, so seeding stays aligned)."""
    if not cfg.enabled:
        return DRSample(obs_bias=np.zeros(state_dim))
    s = cfg.scale
    return DRSample(
        obj_mass_scale=_factor(rng, cfg.mass, s),
        friction_scale=_factor(rng, cfg.friction, s),
        damping_scale=_factor(rng, cfg.damping, s),
        gain_scale=_factor(rng, cfg.actuator_gain, s),
        action_latency=int(rng.integers(0, round(s * cfg.action_latency) + 1)),
        control_jitter=round(s * cfg.control_jitter),
        obs_noise=s * cfg.obs_noise,
        obs_bias=rng.normal(0.0, s * cfg.obs_bias, size=state_dim),
        camera_dpos=rng.uniform(-1, 1, 3) * s * cfg.camera_pos,
        camera_drot=rng.uniform(-1, 1, 3) * s * cfg.camera_rot,
        light_scale=float(rng.uniform(1 - s * cfg.light, 1 + s * cfg.light)),
        light_dpos=rng.uniform(-0.5, 0.5, 3) * s * cfg.light,
        colour_offset=rng.uniform(-1, 1, 3) * s * cfg.colour,
    )


class Curriculum:
    """Widen the randomization while the policy copes: after every ``window`` finished episodes, if their
    success rate is >= ``threshold``, ``scale += step`` (capped at 1); if it is below ``drop_below``,
    ``scale -= step`` (floored at 0).

        curriculum = Curriculum(); for ep in episodes: scale = curriculum.update([ep.success])
        set_randomization_scale(env, scale)
    """

    def __init__(self, threshold: float = 0.8, step: float = 0.1, window: int = 20, start: float = 0.0,
                 drop_below: float = 0.0) -> None:
        if not 0 < window:
            raise ValueError(f"curriculum.window: must be >= 1, got {window}")
        if not 0 <= start <= 1:
            raise ValueError(f"curriculum.start: must be in [0, 1], got {start}")
        self.threshold, self.step, self.window, self.drop_below = threshold, step, window, drop_below
        self.scale = float(start)
        self._recent: deque[bool] = deque(maxlen=window)

    def update(self, successes: list[bool]) -> float:
        """Record finished episodes' success flags; returns the (possibly new) scale."""
        for s in successes:
            self._recent.append(bool(s))
            if len(self._recent) == self.window:
                rate = sum(self._recent) / self.window
                if rate >= self.threshold:
                    self.scale = min(1.0, self.scale + self.step)
                elif rate < self.drop_below:
                    self.scale = max(0.0, self.scale - self.step)
                self._recent.clear()
        return self.scale


def set_randomization_scale(env: Any, scale: float) -> None:
    """Set the randomization scale of every sub-env of a ``TorchVecEnv`` (applies from each env's next reset)."""
    env.call("set_randomization_scale", float(scale))
