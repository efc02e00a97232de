"""`robopolicy` command line: train, eval, quickstart.

    robopolicy train env=hopper policy=gaussian algo=ppo algo.learning_rate=1e-4
    robopolicy eval ckpt=runs/<name> episodes=20
    robopolicy quickstart
    robopolicy demos env=metaworld_reach episodes=50 root=data/reach-50

Arguments after the command are Hydra overrides of configs/train.yaml (or eval.yaml, demos.yaml).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

from rich.console import Console

USAGE = """usage: robopolicy <command> [key=value ...]

commands:
  train       train a policy (Hydra overrides of configs/train.yaml, e.g. env=hopper algo.n_steps=512)
  finetune    continue training a saved policy with PPO: ckpt=<policy|checkpoint|run folder> env=... algo=ppo
  eval        evaluate a checkpoint: ckpt=<run|checkpoint|policy folder> [episodes=N] [video=true]
  quickstart  the whole story on Meta-World reach: noisy demos -> BC diffusion policy -> PPO fine-tuning ->
              eval with a video [task_env=metaworld_reach demos=10 finetune_steps=300000 seed=0 name=...]
  demos       record scripted-expert demos as a LeRobotDataset: env=metaworld_reach episodes=50 root=<folder>
              [action_noise=0.0] [suboptimal_frac=0.0] [explore_noise=0.0] [driver=<policy>] [seed=0]
              [workers=1] [overwrite=false]
  rank        rank candidate policies for the real robot from sim success + recorded real episodes (VSDR):
              'candidates=[runs/a,runs/b,...]' real_data=<recorded episodes> [env=arm_pick_place] [output=rank.json]
  compare     training runs side by side, grouped into arms with what each changed:
              'runs=[runs/a-*,runs/b-*]' [names=[a,b]] [metric=eval/success] [threshold=0.95] [budget=N]
              [columns=[...]] [markdown=true] [plot=compare.png] [output=compare.json]
  fleet       robots and a central learner: fleet <learner|robot|demo|certs> [key=value ...] (docs/fleet.md)
"""

console = Console(stderr=True)


def config_dir() -> Path:
    """configs/ beside the package (editable install) unless ROBOPOLICY_CONFIG_DIR says otherwise."""
    path = Path(os.environ.get("ROBOPOLICY_CONFIG_DIR", Path(__file__).resolve().parent.parent / "configs"))
    if not path.is_dir():
        raise FileNotFoundError(f"config folder not found: {path} (set ROBOPOLICY_CONFIG_DIR)")
    return path


def compose(config_name: str, overrides: list[str]):
    """Compose a Hydra config with overrides; config errors become ConfigError naming the key."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from robopolicy.config import register_configs
    from robopolicy.train_run import ConfigError

    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(str(err).strip()) from err


def cmd_train(overrides: list[str]) -> int:
    from robopolicy.train_run import run_training

    cfg = compose("train", overrides)
    result = run_training(cfg, show_progress=True)
    _report(result)
    return 0


def cmd_finetune(overrides: list[str]) -> int:
    """`robopolicy finetune ckpt=<policy> ...` is `robopolicy train init_policy=<policy> ...`."""
    from robopolicy.train_run import ConfigError, run_training

    ckpts = [o for o in overrides if o.startswith("ckpt=")]
    if not ckpts:
        raise ConfigError("ckpt: required, e.g. robopolicy finetune ckpt=runs/<bc run> env=metaworld_reach algo=ppo")
    rest = [o for o in overrides if not o.startswith("ckpt=")]
    cfg = compose("train", [f"init_policy={ckpts[-1].split('=', 1)[1]}", *rest])
    result = run_training(cfg, show_progress=True)
    _report(result)
    return 0


def cmd_eval(overrides: list[str]) -> int:
    from omegaconf import OmegaConf

    from robopolicy.checkpoint import load_policy, load_run_config, resolve_checkpoint
    from robopolicy.evaluate import evaluate
    from robopolicy.train_run import ConfigError

    cfg = compose("eval", overrides)
    ckpt = resolve_checkpoint(cfg.ckpt)
    policy = load_policy(ckpt)
    env_cfg = cfg.env
    if env_cfg is None:
        run_cfg = load_run_config(ckpt)
        if run_cfg is None:
            raise ConfigError(f"env: {ckpt} carries no run config; pass env.id=... (and env._target_) explicitly")
        env_cfg = run_cfg.env
    video = ckpt / "videos" / "eval.mp4" if cfg.video else None
    episodes = cfg.episodes if cfg.episodes is not None else (50 if cfg.all_configs else 10)
    result = evaluate(policy, env_cfg, episodes=int(episodes), deterministic=bool(cfg.deterministic),
                      seed=int(cfg.seed), video_path=video, execution=str(cfg.execution),
                      n_action_steps=cfg.n_action_steps, ensemble_coeff=float(cfg.ensemble_coeff),
                      all_configs=bool(cfg.all_configs), zero_start=bool(cfg.zero_start))
    summary = result.summary() | {"checkpoint": str(ckpt), "env": OmegaConf.select(env_cfg, "id")}
    _print_eval(summary)
    print(json.dumps(summary))
    return 0


def cmd_quickstart(overrides: list[str]) -> int:
    """demos -> BC -> PPO fine-tuning -> eval on Meta-World reach (robopolicy/quickstart.py)."""
    from robopolicy.quickstart import run_quickstart

    run_quickstart(compose, overrides, console)
    return 0


def cmd_demos(overrides: list[str]) -> int:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from robopolicy.demos_config import register_demos_config
    from robopolicy.train_run import ConfigError

    register_demos_config()
    cfg = compose("demos", overrides)
    try:  # resolve now, so a missing root or a bad interpolation names its key before anything runs
        OmegaConf.resolve(cfg)
        OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        raise ConfigError(str(err).strip()) from err
    try:
        root = instantiate(cfg.recorder)
    except Exception as err:  # Hydra wraps the recorder's ValueError / FileExistsError; keep its message
        cause = err.__cause__ or err
        if isinstance(cause, (ValueError, FileExistsError)):
            raise ConfigError(str(cause)) from err
        raise
    console.print(f"[bold]dataset[/]: {root}")
    return 0


def cmd_rank(overrides: list[str]) -> int:
    """`robopolicy rank`: robopolicy/rank_run.py; prints the table, ends with one JSON line."""
    from robopolicy.rank_config import register_rank_config
    from robopolicy.rank_run import print_ranking, run_rank

    register_rank_config()
    result = run_rank(compose("rank", overrides), show_progress=True)
    print_ranking(result, console)
    print(json.dumps(result))
    return 0


def cmd_compare(overrides: list[str]) -> int:
    """`robopolicy compare`: robopolicy/compare.py; prints the table, ends with one JSON line."""
    from rich.table import Table

    from robopolicy.compare import differences_rows, markdown, run_compare
    from robopolicy.compare_config import register_compare_config

    register_compare_config()
    cfg = compose("compare", overrides)
    result = run_compare(list(cfg.runs), names=list(cfg.names), metric=cfg.metric, threshold=cfg.threshold,
                         budget=cfg.budget, columns=list(cfg.columns), plot=cfg.plot)
    tables = [(result["table"]["header"], result["table"]["rows"],
               cfg.metric + (f", budget {cfg.budget:,} env steps" if cfg.budget else "")),
              (result["arm_table"]["header"], result["arm_table"]["rows"], "per arm")]
    if result["differences"]:
        tables.append((*differences_rows(result["differences"]), "what the arms set differently"))
    # Off a terminal rich wraps at 80 columns; a wide table stays one row per run.
    out = console if console.is_terminal else Console(stderr=True, width=max(console.width, 12 * len(tables[0][0])))
    for header, rows, title in tables:
        table = Table(title=title)
        for i, name in enumerate(header):
            table.add_column(name, justify="left" if i == 0 else "right", overflow="fold")
        for row in rows:
            table.add_row(*row)
        out.print(table)
    if cfg.markdown:
        print("\n\n".join(markdown(header, rows) for header, rows, _ in tables))
    if "plot" in result:
        console.print(f"plot: {result['plot']}")
    if cfg.output:
        Path(cfg.output).write_text(json.dumps(result, indent=1))
        console.print(f"written: {cfg.output}")
    print(json.dumps(result))
    return 0


def cmd_fleet(args: list[str]) -> int:
    from fleet.cli import main as fleet_main  # the fleet package builds on robopolicy, so import it only here

    return fleet_main(args)


def _print_eval(s: dict) -> None:
    line = f"{s['policy']} policy: " if "policy" in s else ""
    line += f"return {s['return_mean']:.1f} ± {s['return_ci95']:.1f} (95% CI, {s['episodes']} episodes)"
    if "success_rate" in s:
        line += f", success {100 * s['success_rate']:.0f}% ± {100 * s['success_ci95']:.0f}%"
    console.print(f"[bold green]eval[/]: {line}")
    if "failed_configs" in s:  # all_configs: the sweep names them
        console.print(f"failed configurations: {s['failed_configs'] or 'none'}")
    if "video" in s:
        console.print(f"video: {s['video']}")


def _report(result) -> None:
    console.print(f"[bold]run folder[/]: {result.run_dir}")
    console.print(f"  config      {result.run_dir / 'config.yaml'}")
    console.print(f"  metrics     {result.run_dir / 'metrics.jsonl'}")
    console.print(f"  checkpoint  {result.checkpoint}")
    if result.plot:
        console.print(f"  plot        {result.plot}")
    if result.eval_summary:
        _print_eval(result.eval_summary)


COMMANDS = {"train": cmd_train, "finetune": cmd_finetune, "eval": cmd_eval, "quickstart": cmd_quickstart, "demos": cmd_demos,
            "rank": cmd_rank, "compare": cmd_compare, "fleet": cmd_fleet}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, overrides = argv[0], argv[1:]
    # Meta-World's observation-space bounds are narrower than its observations; gymnasium's passive
    # checker would print that warning on every env made. HF datasets' per-load "Map" bars are noise too.
    warnings.filterwarnings("ignore", message=r".*(not within the observation space|maximum and minimum values)")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if command not in COMMANDS:
        console.print(f"[red]error[/]: unknown command {command!r}\n{USAGE}")
        return 2
    from robopolicy.train_run import ConfigError

    try:
        return COMMANDS[command](overrides)
    except ConfigError as err:
        console.print(f"[red]config error[/]: {err}")
        return 2
    except FileNotFoundError as err:
        console.print(f"[red]error[/]: {err}")
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
