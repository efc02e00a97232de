"""`make quickstart`: the whole story on one Meta-World task, on a laptop CPU.

    1. demos      10 imperfect scripted-expert episodes (action noise, some much noisier) -> LeRobotDataset
    2. bc         a diffusion policy pretrained on them (chunks of 4 actions)
    3. finetune   PPO through the same objective, starting from the BC policy (experiment=finetune_metaworld)
    4. eval       the best fine-tuned policy on fresh seeds, with a video; success curve with the BC start marked

Everything lands under runs/<name>/ (demos/, bc/, finetune/), and the last line printed is one
JSON object with the BC and fine-tuned success rates.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf
from rich.console import Console


@dataclass
class QuickstartConfig:
    task_env: str = "metaworld_reach"
    """Env config (configs/env/<name>.yaml) of the task."""
    demos: int = 10
    """Scripted-expert demo episodes."""
    action_noise: float = 0.3
    """Gaussian noise on every expert action (imperfect demos)."""
    suboptimal_frac: float = 0.2
    """Share of episodes recorded with much more noise."""
    bc_steps: int = 3000
    """BC gradient steps."""
    finetune_steps: int = 160_000
    """Env-step budget of PPO fine-tuning (it stops earlier at stop_success); sized for <= 15 min on 2 cores."""
    eval_episodes: int = 50
    """Final evaluation episodes of the BC and the fine-tuned policy."""
    seed: int = 0
    """Seed of every stage."""


def run_quickstart(compose, overrides: list[str], console: Console) -> dict:
    """Run the four stages; ``compose(config_name, overrides)`` is the CLI's Hydra composer."""
    from hydra.utils import instantiate

    from robopolicy.demos_config import register_demos_config
    from robopolicy.train_run import run_training

    opts = OmegaConf.merge(OmegaConf.structured(QuickstartConfig), OmegaConf.from_dotlist(
        [o for o in overrides if o.split("=", 1)[0] in QuickstartConfig.__dataclass_fields__]))
    rest = [o for o in overrides if o.split("=", 1)[0] not in QuickstartConfig.__dataclass_fields__]
    name = next((o.split("=", 1)[1] for o in rest if o.startswith("name=")), None)
    rest = [o for o in rest if not o.startswith("name=")]
    root = Path("runs") / (name or f"quickstart-{time.strftime('%Y%m%d-%H%M%S')}")
    common = [f"env={opts.task_env}", f"seed={opts.seed}", "env.chunk=4", f"runs_dir={root}"]
    t0 = time.perf_counter()

    console.rule(f"[bold]1/4 demos[/]: {opts.demos} noisy scripted-expert episodes of {opts.task_env}")
    register_demos_config()
    demos_cfg = compose("demos", [f"env={opts.task_env}", f"episodes={opts.demos}", f"root={root / 'demos'}",
                                  f"action_noise={opts.action_noise}", f"suboptimal_frac={opts.suboptimal_frac}",
                                  f"seed={opts.seed}", "overwrite=true"])
    dataset = instantiate(demos_cfg.recorder)

    console.rule(f"[bold]2/4 bc[/]: diffusion policy, {opts.bc_steps} gradient steps")
    bc = run_training(compose("train", [*common, "algo=bc", "policy=diffusion", f"dataset={dataset}", "name=bc",
                                        f"algo.steps={opts.bc_steps}", "algo.warmup_steps=100", "algo.eval_every=0",
                                        f"eval_episodes={opts.eval_episodes}", *rest]))
    bc_success = bc.eval_summary["success_rate"] if bc.eval_summary else float("nan")
    console.print(f"BC policy: success {100 * bc_success:.0f}% over {opts.eval_episodes} episodes")

    console.rule(f"[bold]3/4 finetune[/]: PPO from the BC policy, up to {opts.finetune_steps:,} env steps")
    ft = run_training(compose("train", [*common, "experiment=finetune_metaworld", f"init_policy={bc.checkpoint}",
                                        "name=finetune", f"total_steps={opts.finetune_steps}",
                                        f"eval_episodes={opts.eval_episodes}", "video=true", *rest]))
    ft_success = ft.eval_summary["success_rate"] if ft.eval_summary else float("nan")
    steps = _steps_to(ft.run_dir / "metrics.jsonl", 0.95)

    console.rule("[bold]4/4 results[/]")
    minutes = (time.perf_counter() - t0) / 60
    console.print(f"demos       {dataset}")
    console.print(f"bc          {bc.run_dir}  success {100 * bc_success:.0f}%")
    console.print(f"finetune    {ft.run_dir}  success {100 * ft_success:.0f}% ({ft.eval_summary['policy']})")
    console.print(f"curve       {ft.plot}  (dotted line: the BC starting point)")
    if ft.eval_summary and "video" in ft.eval_summary:
        console.print(f"video       {ft.eval_summary['video']}")
    console.print(f"steps to 95% (periodic eval): {steps if steps is not None else 'not reached'}; "
                  f"wall-clock {minutes:.1f} min")
    summary = {"bc_success": bc_success, "finetuned_success": ft_success, "steps_to_95": steps,
               "minutes": round(minutes, 2), "run": str(root)}
    print(json.dumps(summary))
    return summary


def _steps_to(metrics: Path, threshold: float) -> int | None:
    """First env step at which a periodic evaluation reached ``threshold`` success."""
    for line in metrics.read_text().splitlines():
        row = json.loads(line)
        periodic = not row.get("eval/is_initial") and not row.get("eval/is_final")
        if periodic and (row.get("eval/success") or 0.0) >= threshold:
            return int(row["step"])
    return None
