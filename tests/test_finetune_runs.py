"""algo=o2o and algo=distill through the real run path (tiny budgets on the toy env)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from test_bc import bc_cfg, fake_loader, synthetic_demos  # noqa: F401  (fake_loader is a fixture)

from robopolicy.checkpoint import load_policy
from robopolicy.cli import compose
from robopolicy.train_run import ConfigError, run_training

TOY = ["env=constant_reward", "env.num_envs=2", "logger=none", "eval_episodes=2", "eval_every=64",
       "total_steps=192", "checkpoint_every=192"]


def rows(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def bc_policy(tmp_path, fake_loader):  # noqa: F811
    data, _ = synthetic_demos(200, state_dim=2, action_dim=1, chunk=1, bound=1.0)
    data.reward = torch.ones(200)  # the toy env pays 1 per step
    fake_loader["data"] = data
    return run_training(bc_cfg(tmp_path), show_progress=False).checkpoint


def test_o2o_pretrains_the_critic_offline_then_trains_with_bc_and_anchor(tmp_path, bc_policy):
    cfg = compose("train", [*TOY, "algo=o2o", f"init_policy={bc_policy}", f"dataset={tmp_path / 'demos'}",
                            "algo.n_steps=16", "algo.batch_size=16", "algo.n_epochs=2", "algo.critic_pretrain_steps=50",
                            f"runs_dir={tmp_path / 'runs'}", "name=o2o"])
    out = rows(run_training(cfg, show_progress=False).run_dir)
    offline = [r for r in out if "offline/critic_loss" in r]
    assert len(offline) == 1 and offline[0]["step"] == 0
    start = [r for r in out if r.get("eval/is_initial")]
    assert len(start) == 1 and start[0]["step"] == 0  # the BC starting point is on the curve
    updates = [r for r in out if "loss/pg" in r]
    assert updates and all({"loss/bc", "loss/anchor", "anchor/divergence"} <= set(r) for r in updates)
    assert updates[-1]["ppo/bc_coef"] < 0.1  # decays from algo.bc_coef=0.1
    assert all(torch.isfinite(torch.tensor(r["loss/anchor"])) for r in updates)


def test_o2o_needs_rewards_in_the_dataset(tmp_path, fake_loader, bc_policy):  # noqa: F811
    fake_loader["data"].reward = None
    cfg = compose("train", [*TOY, "algo=o2o", f"init_policy={bc_policy}", f"dataset={tmp_path / 'demos'}",
                            f"runs_dir={tmp_path / 'runs'}", "name=o2o"])
    with pytest.raises(ConfigError, match="stores no next.reward"):
        run_training(cfg, show_progress=False)


def test_distill_pulls_a_fresh_student_toward_the_teacher(tmp_path, bc_policy):
    cfg = compose("train", [*TOY, "algo=distill", f"teacher={bc_policy}", "policy=gaussian",
                            "policy.encoder.hidden_sizes=[32,32]", "algo.n_steps=16", "algo.batch_size=32",
                            "algo.learning_rate=3e-3", "total_steps=640", f"runs_dir={tmp_path / 'runs'}", "name=d"])
    out = [r for r in rows(run_training(cfg, show_progress=False).run_dir) if "distill/divergence" in r]
    assert len(out) >= 10 and "loss/pg" not in out[0]
    assert out[-1]["distill/divergence"] < 0.5 * out[0]["distill/divergence"]


def test_distill_without_a_teacher_is_named(tmp_path):
    cfg = compose("train", [*TOY, "algo=distill", f"runs_dir={tmp_path}", "name=d"])
    with pytest.raises(ConfigError, match="teacher: required"):
        run_training(cfg, show_progress=False)


def test_bc_on_teacher_data_collects_with_the_teacher(tmp_path, bc_policy):
    cfg = compose("train", [*TOY, "algo=distill", f"teacher={bc_policy}", "algo.distill_kind=dagger",
                            "algo.act_with=teacher", "policy=gaussian", "policy.encoder.hidden_sizes=[32,32]",
                            "algo.n_steps=16", f"runs_dir={tmp_path / 'runs'}", "name=bct"])
    out = [r for r in rows(run_training(cfg, show_progress=False).run_dir) if "loss/distill" in r]
    assert out and all(torch.isfinite(torch.tensor(r["loss/distill"])) for r in out)


def test_teacher_rollouts_need_the_dagger_term(tmp_path):
    cfg = compose("train", [*TOY, "algo=distill", "algo.act_with=teacher", f"runs_dir={tmp_path}", "name=d"])
    with pytest.raises(ConfigError, match="act_with"):
        run_training(cfg, show_progress=False)


def test_o2o_offline_improvement_logs_its_gated_rounds_at_step_0(tmp_path, bc_policy):
    cfg = compose("train", [*TOY, "algo=o2o", f"init_policy={bc_policy}", f"dataset={tmp_path / 'demos'}",
                            "algo.n_steps=16", "algo.batch_size=16", "algo.n_epochs=1", "algo.critic_pretrain_steps=20",
                            "algo.offline_improve_iters=2", "algo.offline_q_steps=20", "algo.offline_improve_states=16",
                            "algo.offline_improve_samples=2", "algo.offline_q_min_heldout_ev=-1e9", "total_steps=32",
                            f"runs_dir={tmp_path / 'runs'}", "name=o2o"])
    out = rows(run_training(cfg, show_progress=False).run_dir)
    offline = [r for r in out if "offline/ope_old" in r]
    assert 1 <= len(offline) <= 2 and all(r["step"] == 0 for r in offline)
    assert "offline/critic_loss" in offline[0] and "offline/q_loss" in offline[0]
    assert all(r["offline/accepted"] in (0.0, 1.0) and "loss/pg" in r for r in offline)


def test_finetune_recipe_serves_flow_and_refuses_its_options_for_tokens_until_removed(tmp_path, fake_loader):  # noqa: F811
    """experiment=finetune_metaworld sets ft_steps=3: a flow policy takes it (3 of its 4 Euler steps become the
    decisions); a token policy refuses it by name, and ``~init_head_options.ft_steps`` (not
    ``init_head_options={}``, which Hydra merges) removes it."""
    fake_loader["data"], _ = synthetic_demos(200, state_dim=2, action_dim=1, chunk=1, bound=1.0)
    recipe = [*TOY, "experiment=finetune_metaworld", "env.num_envs=2", "env.chunk=1", "total_steps=192",
              "eval_every=64", "eval_episodes=2", "algo.n_steps=16", "algo.batch_size=16",
              "algo.critic_warmup_updates=1", f"runs_dir={tmp_path / 'runs'}"]
    (tmp_path / "flow").mkdir(), (tmp_path / "tok").mkdir()
    flow_bc = run_training(bc_cfg(tmp_path / "flow", "policy=flow", "policy.head_options.num_steps=4"),
                           show_progress=False).checkpoint
    flow_run = run_training(compose("train", [*recipe, f"init_policy={flow_bc}", "name=flow"]), show_progress=False)
    assert load_policy(flow_run.checkpoint).num_decisions == 3
    # The run's config.yaml records the policy it trained (the loaded flow head with the recipe's knob), not the
    # policy= default the command line left in place.
    written = OmegaConf.load(flow_run.run_dir / "config.yaml").policy
    assert written.head == "flow" and written.head_options.ft_steps == 3 and written.head_options.num_steps == 4
    token_bc = run_training(bc_cfg(tmp_path / "tok", "policy=tokens", "policy.head_options.d_model=16",
                                   "policy.head_options.num_layers=1", "policy.head_options.num_bins=8"),
                            show_progress=False).checkpoint
    tokens = [*recipe, f"init_policy={token_bc}"]
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['ft_steps'\] for head 'tokens'"):
        run_training(compose("train", [*tokens, "init_head_options={}", "name=merged"]), show_progress=False)
    out = rows(run_training(compose("train", [*tokens, "~init_head_options.ft_steps", "name=tok"]),
                            show_progress=False).run_dir)
    updates = [r for r in out if "loss/pg" in r]
    assert updates and updates[-1]["step"] == 192 and all(r["ppo/critic_warmup"] in (0.0, 1.0) for r in updates)


def _finetune_benchmark():
    """benchmarks/finetune_vs_baselines.py as a module (benchmarks/ is not a package)."""
    import importlib.util

    path = Path(__file__).parents[1] / "benchmarks" / "finetune_vs_baselines.py"
    spec = importlib.util.spec_from_file_location("finetune_vs_baselines", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.mark.parametrize("recipe", ["1m", "1m_wide"])
@pytest.mark.parametrize("head", ["diffusion", "flow", "tokens"])
def test_benchmark_1m_recipe_gives_each_head_options_it_accepts(head, recipe):
    """finetune_metaworld_1m (and its wide-clip variant) set ft_steps and min_std; the benchmark drops what each head
    lacks, and what is left builds that head (a token head given min_std, or a flow head given ft_steps, would refuse
    it by name)."""
    from robopolicy.heads import build_head

    bench = _finetune_benchmark()
    cfg = compose("train", ["env=metaworld_push", bench.RECIPES[recipe], *bench.head_overrides(head, recipe)])
    options = dict(cfg.init_head_options)
    assert cfg.algo.n_steps == 200 and cfg.env.vectorization == "async" and cfg.total_steps == 1_000_000
    ft_steps = {"1m": 5, "1m_wide": 10}[recipe]
    assert options == {"diffusion": {"ft_steps": ft_steps, "min_std": 0.2}, "flow": {"ft_steps": ft_steps, "min_std": 0.2},
                       "tokens": {}}[head]
    assert cfg.algo.clip_coef == {"1m": 0.05, "1m_wide": 0.2}[recipe]
    build_head(head, 8, 4, 4, options)


def test_benchmark_token_recipe_acts_one_action_per_step():
    """--recipe tokens: the token head's experiment (chunk 1, temperature 0.25) builds a token head, the BC and every
    method use chunk 1, and the recipe refuses another head by name."""
    import subprocess
    import sys

    from robopolicy.heads import build_head

    bench = _finetune_benchmark()
    cfg = compose("train", ["env=metaworld_reach", bench.RECIPES["tokens"], *bench.head_overrides("tokens", "tokens")])
    assert dict(cfg.init_head_options) == {"temperature": 0.25} and cfg.env.chunk == 1
    assert (bench.recipe_chunk("tokens"), bench.recipe_chunk("1m_wide")) == (1, 4)
    build_head("tokens", 8, 4, 1, dict(cfg.init_head_options))
    out = subprocess.run([sys.executable, bench.__file__, "--recipe", "tokens", "--head", "flow"], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 2
    assert "--recipe tokens sets a token head's temperature; --head is 'flow' (use --head tokens)" in out.stderr


def test_benchmark_bc_only_stops_after_the_bc_and_prints_its_paths(tmp_path):
    """--bc-only records the demos and trains the BC, names both in its last JSON line and fine-tunes nothing."""
    import subprocess
    import sys

    bench = _finetune_benchmark()
    out = subprocess.run([sys.executable, bench.__file__, "--quick", "--bc-only", "--out", str(tmp_path)],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    (bc,), (demos,) = summary["bc_checkpoints"], summary["datasets"]
    assert (Path(bc) / "policy").is_dir() and Path(demos).is_dir()
    assert not any(key.startswith(("ours_", "o2o_", "naive_")) for key in summary)
    (root,) = tmp_path.iterdir()
    assert sorted(p.name for p in root.iterdir()) == ["bc-0", "demos-0"]


def test_benchmark_grade_sweeps_every_evaluation_and_confirms_the_stop(tmp_path):
    """--grade: the BC's and every method's evaluations sweep the 50 configurations, the stop is confirmed twice and
    each evaluation leaves a checkpoint; an explicit flag or --override still wins, and --quick is refused by name."""
    import subprocess
    import sys

    bench = _finetune_benchmark()
    args = bench.parse_args(["--grade", "--recipe", "1m_wide", "--head", "flow", "--task", "metaworld_push",
                             "--eval-every", "64000", "--override", "bc:algo.steps=10"])
    assert (args.eval_episodes, args.confirm) == (50, 2)
    assert args.override["bc"] == ["eval_all_configs=true", "algo.steps=10"]
    cfg = compose("train", bench.method_overrides("ours", "metaworld_push", 0, tmp_path, tmp_path, tmp_path, args))
    assert (cfg.eval_all_configs, cfg.eval_episodes, cfg.stop_confirm, cfg.checkpoint_every) == (True, 50, 2, 64000)
    assert cfg.algo.clip_coef == 0.2  # the recipe still applies

    args = bench.parse_args(["--grade", "--confirm", "1", "--eval-episodes", "100", "--methods", "naive",
                             "--override", "naive:checkpoint_every=1000"])
    cfg = compose("train", bench.method_overrides("naive", "metaworld_reach", 0, tmp_path, tmp_path, tmp_path, args))
    assert (cfg.eval_all_configs, cfg.eval_episodes, cfg.stop_confirm, cfg.checkpoint_every) == (True, 100, 1, 1000)

    plain = bench.parse_args([])
    assert (plain.eval_episodes, plain.confirm, plain.override) == (30, 0, {})
    cfg = compose("train", bench.method_overrides("ours", "metaworld_reach", 0, tmp_path, tmp_path, tmp_path, plain))
    assert (cfg.eval_all_configs, cfg.checkpoint_every) == (False, plain.steps)

    out = subprocess.run([sys.executable, bench.__file__, "--grade", "--quick"], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 2
    assert "--grade sweeps 50 episodes per evaluation; --quick runs 2 (drop one of them)" in out.stderr
