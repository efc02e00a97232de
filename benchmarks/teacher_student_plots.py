"""The figures of benchmarks/teacher_student_distill.py: the methods' in-run success curves against the teacher, and
the held-out success and position error of the camera student after each offline DAgger round."""

from __future__ import annotations

from pathlib import Path


def plot(results: list[dict], teacher: float, path: Path, task: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in results:
        if r["curve"]:
            xs, ys = zip(*r["curve"])
            ax.plot(xs, ys, marker="o", label=f"{r['method']} (held-out {r['held_out_success']:.0%})")
    ax.axhline(teacher, color="k", linestyle="--", label=f"teacher (held-out {teacher:.0%})")
    ax.axhline(0.9 * teacher, color="gray", linestyle=":", label="90% of the teacher")
    ax.set_xlabel("env steps (0 = the methods' start: the warm start, or the teacher with a fresh estimator)")
    ax.set_ylabel("success (in-run evaluation)")
    ax.set_title(f"arm {task}, randomized: privileged teacher -> camera student")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_rounds(rounds: list[tuple[float, float | None]], teacher: float, path: Path, task: str) -> Path:
    """Held-out success and position error of the student after each offline DAgger round (0 = BC warm start)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = list(range(len(rounds)))
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    left.plot(xs, [r[0] for r in rounds], marker="o", label="camera student")
    left.axhline(teacher, color="k", linestyle="--", label=f"teacher ({teacher:.0%})")
    for share, style in ((0.85, ":"), (0.9, "-.")):
        left.axhline(share * teacher, color="gray", linestyle=style, label=f"{share:.0%} of the teacher")
    left.set_ylabel("held-out success")
    left.set_ylim(0, 1.02)
    right.plot(xs, [r[1] for r in rounds], marker="o", color="tab:red")
    right.set_ylabel("median object-position error (cm)\nalong its own episodes")
    for ax in (left, right):
        ax.set_xlabel("offline DAgger round (0 = BC warm start)")
        ax.set_xticks(xs)
        ax.grid(alpha=0.3)
    left.legend(fontsize=7)
    fig.suptitle(f"arm {task}, randomized: the camera student's estimator on its own trajectories")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
