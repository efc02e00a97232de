"""``record_demos(..., workers=N)``: N processes each record a contiguous block of the episodes, then LeRobot's
``aggregate_datasets`` merges the blocks into one dataset.

Recording camera demos is rendering-bound and single-threaded, so N processes on N cores record N times as many
frames per second. Every episode draws its noise from its own seed (``envs.demos._episode_seed``), so the merged
dataset holds the very frames one process would have written; a test checks it.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import shutil
from pathlib import Path
from typing import Any

POLL_S = 0.5


def _worker(root: str, episodes: int, first_episode: int, kwargs: dict[str, Any], events: Any) -> None:
    import torch

    from envs.demos import record_demos

    torch.set_num_threads(1)  # a driver policy's inference: one core per worker, as the rendering
    record_demos(episodes=episodes, root=root, first_episode=first_episode, events=events, progress=False, **kwargs)


def _blocks(episodes: int, workers: int) -> list[tuple[int, int]]:
    """(first episode, count) of each worker: contiguous, sizes differing by at most one."""
    sizes = [episodes // workers + (k < episodes % workers) for k in range(workers)]
    starts = [sum(sizes[:k]) for k in range(workers)]
    return list(zip(starts, sizes, strict=True))


def record_in_workers(root: Path, episodes: int, workers: int, kwargs: dict[str, Any], progress: bool) -> Path:
    """Record ``episodes`` into ``root`` with ``workers`` processes; a worker that dies stops the recording with
    a RuntimeError naming it and its exit code (the partial blocks are removed)."""
    from lerobot.datasets.aggregate import aggregate_datasets
    from rich.progress import Progress

    from envs.demos import progress_columns, report_success

    parts_dir = root.parent / f".{root.name}.parts"
    shutil.rmtree(parts_dir, ignore_errors=True)
    ctx = mp.get_context("spawn")  # MuJoCo's EGL context and torch's threads do not survive a fork
    events = ctx.Queue()
    parts = [parts_dir / f"part-{k:03d}" for k in range(workers)]
    procs = [ctx.Process(target=_worker, args=(str(part), count, start, kwargs, events), daemon=True)
             for part, (start, count) in zip(parts, _blocks(episodes, workers), strict=True)]
    successes: list[bool] = []
    try:
        for p in procs:
            p.start()
        with Progress(*progress_columns(f"{kwargs['task']} ({workers} workers)"), disable=not progress) as bar:
            job = bar.add_task("episodes", total=episodes, rate="-")
            while len(successes) < episodes:
                try:
                    successes.append(bool(events.get(timeout=POLL_S)))
                    bar.update(job, advance=1, rate=f"{sum(successes) / len(successes):.0%}")
                except queue.Empty:
                    dead = [(k, p.exitcode) for k, p in enumerate(procs) if p.exitcode not in (None, 0)]
                    if dead:
                        k, code = dead[0]
                        raise RuntimeError(f"demos: worker {k} (episodes from {_blocks(episodes, workers)[k][0]}) "
                                           f"exited with code {code}; nothing was written to {root}")
        for p in procs:
            p.join()
        aggregate_datasets([f"local/{p.name}" for p in parts], f"local/{root.name}", roots=parts, aggr_root=root)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        shutil.rmtree(parts_dir, ignore_errors=True)
    report_success(kwargs["task"], root, successes)
    return root
