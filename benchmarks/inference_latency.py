"""Per-chunk inference latency at batch 1 (or --batch B), state observations: our heads vs LeRobot DiffusionPolicy.

Same process, same thread count, Meta-World-sized state (39-D) and action (4-D). For each policy
we time one full chunk prediction (encoder + all denoising / integration / decoding steps):
    ours: diffusion (10 DDIM steps), flow (10 Euler steps), tokens (H*A autoregressive tokens, KV cache)
    ours, tokens without the cache: the same weights, one full causal pass per token (the decoding before)
    LeRobot DiffusionPolicy at its default config (1D-conv U-Net, DDPM, 100 steps, horizon 64)
    LeRobot DiffusionPolicy matched to our diffusion policy in parameter count and steps (DDIM 10)

    python benchmarks/inference_latency.py --quick   # ~1 min (LeRobot's default takes ~40 s per chunk)
The last line is one JSON object with the median milliseconds per chunk and the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

STATE_DIM, ACTION_DIM = 39, 4


def median_ms(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def ours(head: str, chunk: int, options: dict, batch: int = 1):
    from robopolicy.policy import Policy, PolicyConfig
    from robopolicy.types import OBS_STATE

    policy = Policy(PolicyConfig(head=head, head_options=options, state_dim=STATE_DIM, action_dim=ACTION_DIM,
                                 chunk=chunk, action_low=[-1.0] * ACTION_DIM, action_high=[1.0] * ACTION_DIM)).eval()
    obs = {OBS_STATE: torch.randn(batch, STATE_DIM)}

    @torch.inference_mode()
    def act():
        return policy.act(obs, deterministic=True).actions

    return act, policy, obs


def uncached_tokens(policy, obs):
    """A token policy decoded greedily with one full causal pass over the growing prefix per token
    (TokenHead._decode), as TokenHead.sample did before its KV cache."""
    head = policy.head

    @torch.inference_mode()
    def act():
        feat = policy.features(obs)
        tokens = torch.zeros(feat.shape[0], 0, dtype=torch.int64)
        for _ in range(head.num_decisions):
            tokens = torch.cat([tokens, head._decode(feat, tokens)[:, -1:].argmax(-1)], dim=1)
        return policy.scaler.to_env(head.detokenize(tokens))

    return act


def lerobot_diffusion(batch: int = 1, **overrides):
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    cfg = DiffusionConfig(
        device="cpu",
        # LeRobot's diffusion policy needs a robot state and an image or an environment state: the 39-D
        # Meta-World state is split as it is laid out (hand xyz + gripper, then objects and goal).
        input_features={
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(4,)),
            "observation.environment_state": PolicyFeature(type=FeatureType.ENV, shape=(STATE_DIM - 4,)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(ACTION_DIM,))},
        **overrides,
    )
    policy = DiffusionPolicy(cfg).eval()
    inputs = {"observation.state": torch.randn(batch, cfg.n_obs_steps, 4),
              "observation.environment_state": torch.randn(batch, cfg.n_obs_steps, STATE_DIM - 4)}

    @torch.inference_mode()
    def act():
        return policy.predict_action_chunk(inputs)

    return act, sum(p.numel() for p in policy.parameters()), cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (< 1 minute)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2 = all cores here)")
    parser.add_argument("--chunk", type=int, default=8, help="action chunk H of our heads")
    parser.add_argument("--batch", type=int, default=1,
                        help="observations per call (1: one robot; 8: a fine-tuning rollout's envs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    repeats = 20 if args.quick else 100

    results: dict[str, dict] = {}
    token_policy = None
    for name, head, options in [
        ("ours_diffusion", "diffusion", {"num_inference_steps": 10}),
        ("ours_flow", "flow", {"num_steps": 10}),
        ("ours_tokens", "tokens", {}),
    ]:
        fn, policy, obs = ours(head, args.chunk, options, args.batch)
        params = sum(p.numel() for p in policy.parameters())
        results[name] = {"ms": median_ms(fn, repeats), "params": params}
        print(f"{name:>26}: {results[name]['ms']:7.2f} ms/chunk  ({params / 1e6:.2f}M params)", flush=True)
        if head == "tokens":
            token_policy = (fn, policy, obs)
    cached, policy, obs = token_policy
    uncached = uncached_tokens(policy, obs)
    # Same greedy tokens either way, or the two timings would not be of the same policy.
    if not torch.allclose(uncached(), cached(), atol=1e-6):
        raise SystemExit("inference_latency: cached and full-pass token decoding disagree")
    results["ours_tokens_uncached"] = {"ms": median_ms(uncached, repeats), "params": results["ours_tokens"]["params"]}
    print(f"{'ours_tokens_uncached':>26}: {results['ours_tokens_uncached']['ms']:7.2f} ms/chunk  (the same weights, "
          f"no KV cache)", flush=True)

    fn, params, cfg = lerobot_diffusion(args.batch)
    # ~250M parameters and 100 DDPM steps: tens of seconds per chunk on a CPU, so few repeats.
    results["lerobot_default"] = {"ms": median_ms(fn, 1 if args.quick else 3, warmup=0 if args.quick else 1),
                                  "params": params,
                                  "steps": cfg.num_train_timesteps, "horizon": cfg.horizon}
    print(f"{'lerobot_default':>26}: {results['lerobot_default']['ms']:7.2f} ms/chunk  ({params / 1e6:.2f}M params, "
          f"{cfg.noise_scheduler_type} {cfg.num_train_timesteps} steps, horizon {cfg.horizon})", flush=True)

    # Matched: the smallest U-Net LeRobot builds here (down_dims 32, 64: 0.32M params vs our 0.24M),
    # DDIM with our 10 steps and an 8-step action chunk.
    target = results["ours_diffusion"]["params"]
    fn, params, cfg = lerobot_diffusion(args.batch, down_dims=(32, 64), diffusion_step_embed_dim=32, horizon=16,
                                        n_action_steps=args.chunk, noise_scheduler_type="DDIM",
                                        num_inference_steps=10)
    results["lerobot_matched"] = {"ms": median_ms(fn, repeats), "params": params}
    print(f"{'lerobot_matched':>26}: {results['lerobot_matched']['ms']:7.2f} ms/chunk  ({params / 1e6:.2f}M params vs "
          f"ours {target / 1e6:.2f}M, DDIM 10 steps, horizon 16)", flush=True)

    summary = {k: round(v["ms"], 3) for k, v in results.items()}
    summary |= {f"{k}_params": v["params"] for k, v in results.items()}
    summary["ratio_lerobot_matched_over_ours_diffusion"] = round(results["lerobot_matched"]["ms"]
                                                                 / results["ours_diffusion"]["ms"], 2)
    summary["ratio_lerobot_default_over_ours_diffusion"] = round(results["lerobot_default"]["ms"]
                                                                 / results["ours_diffusion"]["ms"], 2)
    summary["ratio_tokens_uncached_over_cached"] = round(results["ours_tokens_uncached"]["ms"]
                                                          / results["ours_tokens"]["ms"], 2)
    summary["threads"], summary["chunk"], summary["batch"] = args.threads, args.chunk, args.batch
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
