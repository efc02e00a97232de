"""BC training throughput: our diffusion policy (multi-sample noising) vs LeRobot DiffusionPolicy.

Same run, same thread count, same LeRobotDataset (written by this script: Meta-World-sized synthetic
episodes, 4-D robot state + 35-D environment state, 4-D action, 10 fps), parameter-matched models:
    ours:    Policy(diffusion head, MLP denoiser, chunk H = 8, num_noise_samples = k), load_demos into
             memory, DemoSampler minibatches, BC.update (AdamW, grad clip, LR schedule, EMA)
    LeRobot: DiffusionPolicy (smallest U-Net, down_dims 32/64, horizon 16, n_obs_steps 2), its
             preprocessor, AdamW step; fed two ways:
               lerobot_dataloader  LeRobotDataset(delta_timestamps) + torch DataLoader (its training path)
               lerobot_in_memory   the same batches collated once beforehand (model compute only)
Throughput is counted two ways: demo chunks per second (one condition = one dataset sample) and
denoising samples per second (condition x noise draw: the (x_t, t, cond) triples the loss averages
over; LeRobot draws one per condition, ours k). The ratio the heads issue asks for is on the latter.

    python benchmarks/bc_throughput.py --quick     # < 1 minute
The last printed line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROBOT_DIM, ENV_DIM, ACTION_DIM, FPS = 4, 35, 4, 10


def write_dataset(root: Path, episodes: int, steps: int) -> None:
    """Smooth random trajectories (so chunks are learnable), written with LeRobot's own writer."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    features = {"observation.state": {"dtype": "float32", "shape": (ROBOT_DIM,), "names": None},
                "observation.environment_state": {"dtype": "float32", "shape": (ENV_DIM,), "names": None},
                "action": {"dtype": "float32", "shape": (ACTION_DIM,), "names": None}}
    ds = LeRobotDataset.create(repo_id="local/bc_throughput", fps=FPS, features=features, root=root, use_videos=False)
    rng = np.random.default_rng(0)
    for _ in range(episodes):
        goal = rng.uniform(-1, 1, ENV_DIM).astype(np.float32)
        pos = rng.uniform(-1, 1, ROBOT_DIM).astype(np.float32)
        for _ in range(steps):
            action = np.clip(goal[:ACTION_DIM] - pos + 0.05 * rng.normal(size=ACTION_DIM), -1, 1).astype(np.float32)
            ds.add_frame({"observation.state": pos.copy(), "observation.environment_state": goal,
                          "action": action, "task": "reach"})
            pos = (pos + 0.1 * action).astype(np.float32)
        ds.save_episode()
    ds.finalize()


def rate(step, seconds: float, warmup: int) -> tuple[float, int]:
    """Steps per second of ``step()`` over ~``seconds`` after ``warmup`` untimed steps."""
    for _ in range(warmup):
        step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    return n / (time.perf_counter() - t0), n


def ours(root: Path, chunk: int, batch: int, noise_samples: int):
    from robopolicy.algorithms.bc import BC, BCConfig, fill_padded_actions, set_obs_stats
    from robopolicy.bc_run import DemoSampler
    from robopolicy.data.demos import load_demos
    from robopolicy.policy import Policy, PolicyConfig
    from robopolicy.types import OBS_STATE

    t0 = time.perf_counter()
    demos = load_demos(root, chunk=chunk)
    # Our encoder reads one state vector: the robot and environment parts side by side (39-D, as Meta-World).
    state = torch.cat([demos.obs[OBS_STATE], demos.obs["observation.environment_state"]], dim=-1)
    load_s = time.perf_counter() - t0
    policy = Policy(PolicyConfig(head="diffusion", head_options={"num_noise_samples": noise_samples},
                                 state_dim=state.shape[1], action_dim=ACTION_DIM, chunk=chunk,
                                 action_low=[-1.0] * ACTION_DIM, action_high=[1.0] * ACTION_DIM))
    set_obs_stats(policy, None, {OBS_STATE: state})
    bc = BC(policy, BCConfig(steps=10**6, batch_size=batch, warmup_steps=10))
    sampler = DemoSampler({OBS_STATE: state}, fill_padded_actions(demos.actions, demos.action_is_pad), batch, seed=0)
    return (lambda: bc.update(sampler.next())), sum(p.numel() for p in policy.parameters()), load_s


def lerobot(root: Path, batch: int, chunk: int):
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
    from lerobot.policies.factory import make_pre_post_processors

    cfg = DiffusionConfig(
        device="cpu",
        input_features={"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(ROBOT_DIM,)),
                        "observation.environment_state": PolicyFeature(type=FeatureType.ENV, shape=(ENV_DIM,))},
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(ACTION_DIM,))},
        down_dims=(32, 64), diffusion_step_embed_dim=32, horizon=16, n_action_steps=chunk,
        noise_scheduler_type="DDIM", num_inference_steps=10,
    )
    t0 = time.perf_counter()
    delta = {k: [i / FPS for i in cfg.observation_delta_indices]
             for k in ("observation.state", "observation.environment_state")}
    delta["action"] = [i / FPS for i in cfg.action_delta_indices]
    ds = LeRobotDataset("local/bc_throughput", root=root, delta_timestamps=delta)
    load_s = time.perf_counter() - t0
    policy = DiffusionPolicy(cfg).train()
    pre, _ = make_pre_post_processors(cfg, dataset_stats=ds.meta.stats)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.optimizer_lr, weight_decay=cfg.optimizer_weight_decay)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=0, drop_last=True)
    it = iter(loader)

    def next_batch():
        nonlocal it
        try:
            return next(it)
        except StopIteration:
            it = iter(loader)
            return next(it)

    def train_step(raw):
        loss, _ = policy.forward(pre(raw))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 10.0)
        opt.step()

    cached = [next_batch() for _ in range(4)]
    counter = {"i": 0}

    def in_memory():
        counter["i"] += 1
        train_step(dict(cached[counter["i"] % len(cached)]))

    return (lambda: train_step(next_batch())), in_memory, sum(p.numel() for p in policy.parameters()), load_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small dataset, short timings (< 1 minute)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1, as training runs default to; 2 threads on a busy 2-core box thrash)")
    parser.add_argument("--batch", type=int, default=64, help="demo chunks per gradient step (LeRobot's default 64)")
    parser.add_argument("--noise-samples", type=int, default=8, help="our num_noise_samples k")
    parser.add_argument("--chunk", type=int, default=8, help="our chunk H = LeRobot's n_action_steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    logging.getLogger("lerobot.utils.import_utils").setLevel(logging.ERROR)
    import datasets

    datasets.disable_progress_bars()
    seconds, episodes = (5.0, 10) if args.quick else (30.0, 50)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bc_throughput"
        write_dataset(root, episodes=episodes, steps=100)
        ours_step, ours_params, ours_load = ours(root, args.chunk, args.batch, args.noise_samples)
        ours_rate, ours_n = rate(ours_step, seconds, warmup=5)
        single_step = ours(root, args.chunk, args.batch, 1)[0]  # the same policy without multi-sample noising
        single_rate, _ = rate(single_step, seconds, warmup=5)
        lr_loader, lr_memory, lr_params, lr_load = lerobot(root, args.batch, args.chunk)
        loader_rate, loader_n = rate(lr_loader, seconds, warmup=2)
        memory_rate, memory_n = rate(lr_memory, seconds, warmup=2)

    b, k = args.batch, args.noise_samples
    res = {
        "ours_chunks_per_s": round(ours_rate * b, 1), "ours_denoising_samples_per_s": round(ours_rate * b * k, 1),
        "ours_k1_chunks_per_s": round(single_rate * b, 1),
        "lerobot_dataloader_chunks_per_s": round(loader_rate * b, 1),
        "lerobot_in_memory_chunks_per_s": round(memory_rate * b, 1),
        "ratio_denoising_samples_vs_lerobot_dataloader": round(ours_rate * k / loader_rate, 2),
        "ratio_denoising_samples_vs_lerobot_in_memory": round(ours_rate * k / memory_rate, 2),
        "ratio_chunks_vs_lerobot_dataloader": round(ours_rate / loader_rate, 2),
        "ratio_chunks_vs_lerobot_in_memory": round(ours_rate / memory_rate, 2),
        "ours_params": ours_params, "lerobot_params": lr_params, "batch": b, "noise_samples": k, "chunk": args.chunk,
        "threads": args.threads, "frames": episodes * 100, "timed_steps": {"ours": ours_n, "lerobot_dataloader": loader_n,
                                                                           "lerobot_in_memory": memory_n},
        "load_s": {"ours": round(ours_load, 2), "lerobot": round(lr_load, 2)},
    }
    print(f"ours (k={k}):          {res['ours_chunks_per_s']:9.1f} chunks/s  {res['ours_denoising_samples_per_s']:9.1f} "
          f"denoising samples/s  ({ours_params / 1e6:.2f}M params)")
    print(f"ours (k=1):           {res['ours_k1_chunks_per_s']:9.1f} chunks/s  (= denoising samples/s)")
    print(f"LeRobot, DataLoader:  {res['lerobot_dataloader_chunks_per_s']:9.1f} chunks/s  (= denoising samples/s, "
          f"{lr_params / 1e6:.2f}M params)")
    print(f"LeRobot, in memory:   {res['lerobot_in_memory_chunks_per_s']:9.1f} chunks/s")
    print(f"ratio (denoising samples/s): {res['ratio_denoising_samples_vs_lerobot_dataloader']}x vs DataLoader, "
          f"{res['ratio_denoising_samples_vs_lerobot_in_memory']}x vs in-memory; chunks/s: "
          f"{res['ratio_chunks_vs_lerobot_dataloader']}x / {res['ratio_chunks_vs_lerobot_in_memory']}x")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
