"""Adapter overhead on the PPO hot path: TorchVecEnv (sync, B=1) vs a raw gymnasium Hopper-v5 loop.

Slow (about 15 s) and timing-based, so marked ``slow``; run with ``pytest -m slow tests/envs``.
Rounds are interleaved and the median taken, because a shared 2-core machine is noisy.
"""

from __future__ import annotations

import statistics
import time

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs


def _raw_rate(env: gym.Env, actions: np.ndarray) -> float:
    t = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    return len(actions) / (time.perf_counter() - t)


def _adapter_rate(env: envs.TorchVecEnv, actions: list[torch.Tensor]) -> float:
    t = time.perf_counter()
    for a in actions:
        env.step(a)
    return len(actions) / (time.perf_counter() - t)


@pytest.mark.slow
def test_sync_adapter_keeps_most_of_the_raw_step_rate():
    n, rounds = 2000, 9
    rng = np.random.default_rng(0)
    raw = gym.make("Hopper-v5")
    raw.reset(seed=0)
    raw_actions = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
    ours = envs.make_gym_vec_env("Hopper-v5", num_envs=1)
    ours.reset()
    # Fresh (1, 1, 3) tensors, as a policy hands them over.
    our_actions = list(torch.from_numpy(rng.uniform(-1, 1, (n, 1, 1, 3)).astype(np.float32)).unbind(0))
    raw_rates, our_rates = [], []
    for _ in range(rounds):
        raw_rates.append(_raw_rate(raw, raw_actions))
        our_rates.append(_adapter_rate(ours, our_actions))
    ours.close()
    raw_m, our_m = statistics.median(raw_rates), statistics.median(our_rates)
    print(f"Hopper-v5 raw {raw_m:.0f} steps/s, TorchVecEnv sync B=1 {our_m:.0f} steps/s ({our_m / raw_m:.2f} x raw)")
    # Measured ~0.77 x; 0.6 leaves room for noise while catching a per-step cost of ~0.5 MuJoCo steps.
    assert our_m >= 0.6 * raw_m
