"""Env throughput through our batched adapter vs raw ``mujoco.mj_step`` on the same model, same process.

For our arm (pick-place, state observations) and a Meta-World task (reach-v3): env steps/s of ``TorchVecEnv``
(``make_gym_vec_env``) with 1, 2 and 8 envs, sync and async, random actions; and the raw rate of the same
MjModel stepped by ``mujoco.mj_step(model, data, nstep=substeps)`` in a bare loop (the physics of one env step,
nothing else). The fraction ours / raw says how much of the simulator's speed survives the Python env (IK,
rewards, observations), gymnasium's wrappers and our adapter (goal >= 0.6 for state observations). The raw loop
replays the controls the env produced, so both do the same physics (contacts included); the plain gymnasium env
without the adapter is printed too, to separate the env's own Python from the adapter's.
Async with B envs runs on several processes, so its fraction can exceed 1 on a multi-core machine; on 2 cores
it mostly shows the IPC cost. Also the cost of rendering one 84x84 camera frame (EGL/OSMesa offscreen).

    MUJOCO_GL=egl python benchmarks/env_throughput.py --quick    # < 1 minute
    MUJOCO_GL=egl python benchmarks/env_throughput.py            # longer runs, steadier figures

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import mujoco
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import envs.metaworld  # noqa: F401  (registers the arm and Meta-World ids)
from envs.gym_vec import make_gym_vec_env

TARGETS = {
    "arm_pick_place": {"id": "robopolicy/Arm-PickPlace-v0", "kwargs": {}},
    "metaworld_reach": {"id": "envs.metaworld:robopolicy/MetaWorld-reach-v3", "kwargs": {}},
}


def _one_env(name: str):
    """One plain gymnasium env of ``name`` (no adapter), reset with seed 0, and its physics steps per env step."""
    import gymnasium as gym

    env = gym.make(TARGETS[name]["id"].split(":")[-1], disable_env_checker=True)  # "module:id" -> id
    env.reset(seed=0)
    u = env.unwrapped
    return env, int(u.substeps if name == "arm_pick_place" else u.frame_skip)


def raw_rate(name: str, steps: int, repeats: int = 3) -> float:
    """Env-step equivalents per second of bare ``mj_step(m, d, nstep=substeps)`` on the env's own model, replaying
    the controls the env itself produced for random actions from the same start: the same physics, contacts
    included, without the env's Python. Best of ``repeats``."""
    env, substeps = _one_env(name)
    m, d = env.unwrapped.model, env.unwrapped.data
    start = (d.qpos.copy(), d.qvel.copy(), d.act.copy(), d.ctrl.copy(), d.mocap_pos.copy(), d.mocap_quat.copy())
    env.action_space.seed(0)
    ctrls, mocap = [], []
    for _ in range(min(steps, env.spec.max_episode_steps - 1)):  # one episode: what the env applies each step
        env.step(env.action_space.sample())
        ctrls.append(d.ctrl.copy())
        mocap.append((d.mocap_pos.copy(), d.mocap_quat.copy()))  # Meta-World moves its hand by a mocap body
    best = 0.0
    for _ in range(repeats):
        done, t = 0, 0.0
        while done < steps:  # replay the episode from its start until ``steps`` env steps have run
            d.qpos[:], d.qvel[:], d.act[:], d.ctrl[:], d.mocap_pos[:], d.mocap_quat[:] = start
            mujoco.mj_forward(m, d)
            t0 = time.perf_counter()
            for c, (mp, mq) in zip(ctrls, mocap, strict=True):
                d.ctrl[:] = c
                d.mocap_pos[:], d.mocap_quat[:] = mp, mq
                mujoco.mj_step(m, d, nstep=substeps)
            t += time.perf_counter() - t0
            done += len(ctrls)
        best = max(best, done / t)
    env.close()
    return best


def gym_rate(name: str, steps: int, repeats: int = 3) -> float:
    """Steps per second of the plain gymnasium env (gym.make, no adapter), random actions, best of ``repeats``."""
    env, _ = _one_env(name)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(64)]
    best = 0.0
    for _ in range(repeats):
        env.reset(seed=0)
        t0 = time.perf_counter()
        for i in range(steps):
            _, _, te, tr, _ = env.step(actions[i % 64])
            if te or tr:
                env.reset()
        best = max(best, steps / (time.perf_counter() - t0))
    env.close()
    return best


def adapter_rate(name: str, num_envs: int, vectorization: str, steps: int, repeats: int = 3) -> float:
    """Env steps per second (all B envs) of TorchVecEnv.step with pre-drawn random action chunks, best of
    ``repeats`` (the machine may be shared: the best run is the least disturbed)."""
    env = make_gym_vec_env(TARGETS[name]["id"], num_envs=num_envs, vectorization=vectorization,
                           kwargs=TARGETS[name]["kwargs"])
    try:
        rng = np.random.default_rng(0)
        actions = torch.from_numpy(rng.uniform(env.action_low.numpy(), env.action_high.numpy(),
                                               size=(64, num_envs, 1, env.action_dim)).astype(np.float32))
        env.reset(seed=0)
        for i in range(min(20, steps)):  # warm-up: first resets, async workers' first messages
            env.step(actions[i % 64])
        n = max(1, steps // num_envs)
        best = 0.0
        for _ in range(repeats):
            t0 = time.perf_counter()
            for i in range(n):
                env.step(actions[i % 64])
            best = max(best, n * num_envs / (time.perf_counter() - t0))
        return best
    finally:
        env.close()


def render_ms(name: str, frames: int) -> float:
    """Milliseconds to render one 84x84 frame of the env's main camera (arm: front, Meta-World: corner)."""
    env, _ = _one_env(name)
    m, d = env.unwrapped.model, env.unwrapped.data
    renderer = mujoco.Renderer(m, 84, 84)
    cam = "front" if name == "arm_pick_place" else "corner"
    renderer.update_scene(d, camera=cam)
    renderer.render()  # the first frame builds GL buffers
    t0 = time.perf_counter()
    for _ in range(frames):
        renderer.update_scene(d, camera=cam)
        renderer.render()
    ms = (time.perf_counter() - t0) / frames * 1e3
    renderer.close()
    env.close()
    return ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs (< 1 min)")
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    scale = 1 if args.quick else 5
    steps = {"arm_pick_place": 700 * scale, "metaworld_reach": 150 * scale}
    summary: dict[str, object] = {"quick": args.quick, "cpus": os.cpu_count(), "mujoco_gl": os.environ.get("MUJOCO_GL")}
    for name in args.targets:
        raw = raw_rate(name, steps[name])
        plain = gym_rate(name, steps[name])
        summary[f"{name}/raw_mj_step"] = round(raw, 1)
        summary[f"{name}/gym_env"] = round(plain, 1)
        summary[f"{name}/gym_env/fraction_of_raw"] = round(plain / raw, 3)
        print(f"{name}: raw mujoco.mj_step {raw:,.0f} env-steps/s (same model, substeps and controls)", flush=True)
        print(f"  plain gym env (no adapter): {plain:9,.0f} steps/s  = {plain / raw:5.2f} x raw", flush=True)
        for vec in ("sync", "async"):
            for b in (1, 2, 8):
                rate = adapter_rate(name, b, vec, steps[name])
                summary[f"{name}/{vec}/{b}"] = round(rate, 1)
                summary[f"{name}/{vec}/{b}/fraction_of_raw"] = round(rate / raw, 3)
                print(f"  {vec:5s} B={b}: {rate:9,.0f} steps/s  = {rate / raw:5.2f} x raw", flush=True)
        ms = render_ms(name, 30 * scale)
        summary[f"{name}/render_84x84_ms"] = round(ms, 2)
        print(f"  render one 84x84 frame: {ms:.1f} ms", flush=True)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
