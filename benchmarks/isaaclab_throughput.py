"""Isaac Lab throughput through our adapter vs Isaac Lab's own ``env.step``, on the same env in the same process.

Isaac-Cartpole-Direct (Newton physics, MuJoCo-Warp; the cartpole authored by envs/isaaclab_assets.py) with B envs
on one device: env steps/s of Isaac Lab's gymnasium env stepped directly (the peer: what rsl_rl or skrl drive), and
of ``IsaacLabEnv.step`` with chunks of 1 and of 4 actions on that same env. The ratio ours / raw is what our
adapter (chunking, reward sums, episode bookkeeping) keeps of Isaac Lab's rate. Isaac Lab holds one simulation per
process, so the sizes run in turn, each in a fresh subprocess. Runs in .venv-isaaclab (docs/envs.md):

    PYTHONPATH=. .venv-isaaclab/bin/python benchmarks/isaaclab_throughput.py --quick     # 256 envs, < 1 minute
    PYTHONPATH=. .venv-isaaclab/bin/python benchmarks/isaaclab_throughput.py             # 16, 256 and 1024 envs
    PYTHONPATH=. .venv-isaaclab/bin/python benchmarks/isaaclab_throughput.py --device cuda:0 --num-envs 64 4096

The first run compiles Warp's kernels (1-2 min on 2 CPU cores). The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing


def measure(num_envs: int, device: str, calls: int, rounds: int = 4) -> dict[str, float]:
    """One size in this process, on one env: Isaac Lab's own step, and our adapter with chunks of 1 and of 4.
    The three alternate over ``rounds`` rounds of ``calls / rounds`` calls, so a drift in the machine's load
    falls on each alike."""
    from envs.isaaclab import make_isaaclab_vec_env

    env = make_isaaclab_vec_env("Isaac-Cartpole-Direct", num_envs=num_envs, chunk=4,
                                kwargs={"device": device, "overrides": ["physics=newton_mjwarp"], "local_asset": True})
    try:
        env.reset(seed=0)
        gen = torch.Generator().manual_seed(0)
        one = (torch.rand(num_envs, 1, generator=gen) * 2 - 1).to(env.device)
        chunk = (torch.rand(num_envs, 4, 1, generator=gen) * 2 - 1).to(env.device)

        def raw():
            env._env.step(one)

        def ours(execute: int):
            env.execute = execute  # the adapter runs the first `execute` actions of each chunk per call
            env.step(chunk)

        arms = {"raw": (raw, 1), "ours_chunk1": (lambda: ours(1), 1), "ours_chunk4": (lambda: ours(4), 4)}
        seconds = dict.fromkeys(arms, 0.0)
        steps = dict.fromkeys(arms, 0)
        for name, (fn, _) in arms.items():  # warm-up
            for _ in range(3):
                fn()
        for _ in range(rounds):
            for name, (fn, per_call) in arms.items():
                n = max(1, calls // rounds // per_call)  # the same env steps for each arm
                start = time.perf_counter()
                for _ in range(n):
                    fn()
                seconds[name] += time.perf_counter() - start
                steps[name] += n * per_call * num_envs
    finally:
        env.close()
    rate = {name: steps[name] / seconds[name] for name in arms}
    return {"raw_steps_per_s": rate["raw"], "ours_chunk1_steps_per_s": rate["ours_chunk1"],
            "ours_chunk4_steps_per_s": rate["ours_chunk4"], "ratio_chunk1": rate["ours_chunk1"] / rate["raw"],
            "ratio_chunk4": rate["ours_chunk4"] / rate["raw"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 envs, 200 env steps per arm (< 1 min compiled)")
    parser.add_argument("--num-envs", type=int, nargs="+", default=None, help="sizes B (default 16 256 1024)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda:0")
    parser.add_argument("--calls", type=int, default=None, help="timed env steps per arm and size (200 quick, 800)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)  # one size, in a subprocess
    args = parser.parse_args()
    calls = args.calls or (200 if args.quick else 800)
    if args.child is not None:
        print(json.dumps(measure(args.child, args.device, calls)))
        return
    sizes = args.num_envs or ([256] if args.quick else [16, 256, 1024])
    summary: dict[str, object] = {"task": "Isaac-Cartpole-Direct", "device": args.device, "calls": calls}
    print(f"{'envs':>6} {'Isaac Lab env.step':>20} {'ours, chunk 1':>16} {'ours, chunk 4':>16} {'ratio 1':>8} "
          f"{'ratio 4':>8}")
    for n in sizes:
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--device", args.device, "--calls",
                              str(calls)], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            sys.exit(f"isaaclab_throughput: {n} envs failed:\n{out.stderr[-2000:]}")
        fig = json.loads(out.stdout.strip().splitlines()[-1])
        summary[f"envs_{n}"] = {k: round(v, 3 if k.startswith("ratio") else 0) for k, v in fig.items()}
        print(f"{n:>6} {fig['raw_steps_per_s']:>20.0f} {fig['ours_chunk1_steps_per_s']:>16.0f} "
              f"{fig['ours_chunk4_steps_per_s']:>16.0f} {fig['ratio_chunk1']:>8.2f} {fig['ratio_chunk4']:>8.2f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
