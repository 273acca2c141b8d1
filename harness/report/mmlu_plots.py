"""The MMLU analysis's plots, from its analysis dict (report/mmlu_analysis.py); matplotlib (the
extraction extra brings it). Without matplotlib no plot is drawn and the JSON and CSV stand alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_all(folder: Path, analysis: dict[str, Any]) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    models = sorted(analysis["models"])
    subjects = sorted(analysis["subjects"])
    chance = analysis["chance"]

    # Subjects x models heatmap.
    grid = [[(analysis["subjects"][s].get(m) or {}).get("accuracy") for m in models] for s in subjects]
    fig, ax = plt.subplots(figsize=(2.2 + 1.4 * len(models), 1.2 + 0.32 * len(subjects)))
    values = [[float("nan") if v is None else v for v in row] for row in grid]
    image = ax.imshow(values, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(models)), models, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(subjects)), subjects, fontsize=8)
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            if v is not None:
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label="accuracy")
    ax.set_title("MMLU accuracy per subject and model")
    fig.tight_layout()
    written.append(_save(fig, folder / "heatmap.png", plt))

    # Overall accuracy with intervals, and the chance line.
    rows = [(m, analysis["models"][m]) for m in models if analysis["models"][m]["accuracy"] is not None]
    if rows:
        fig, ax = plt.subplots(figsize=(2.5 + 1.2 * len(rows), 4))
        acc = [r["accuracy"] for _, r in rows]
        low, high = _errors(r for _, r in rows)
        colors = ["#b3261e" if r["chance_in_interval"] else "#2f6fb0" for _, r in rows]
        ax.bar(range(len(rows)), acc, yerr=[low, high], capsize=4, color=colors)
        ax.axhline(chance, color="gray", linestyle="--", label=f"chance ({chance:.0%})")
        ax.set_xticks(range(len(rows)), [m for m, _ in rows], rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("accuracy (95% interval)")
        ax.set_title("MMLU accuracy per model\n(red: the interval includes chance)", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, folder / "accuracy.png", plt))

        # Efficiency: accuracy against mean time per question.
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for m, r in rows:
            x = r["mean_latency_s"] or 0.0
            ax.errorbar(x, r["accuracy"], yerr=_errors([r]), fmt="o", capsize=3)
            ax.annotate(m, (x, r["accuracy"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.axhline(chance, color="gray", linestyle="--")
        ax.set_xlabel("mean wall time per question (s)")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        ax.set_title("MMLU accuracy against time")
        fig.tight_layout()
        written.append(_save(fig, folder / "efficiency.png", plt))

    # Time: per model, real (wall) time against CPU time, user and system stacked, and GPU busy
    # time where a GPU was measured (left); wall time per subject and model (right).
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(10, 4 + 0.5 * len(subjects) * max(1, len(models)) / 2),
                                                    4.5), gridspec_kw={"width_ratios": [1, 2]})
    parts = time_parts(analysis)
    has_gpu = any(p["gpu_s"] is not None for p in parts.values())
    kinds = 3 if has_gpu else 2
    width = 0.8 / kinds
    xs = range(len(models))
    left.bar([x for x in xs], [parts[m]["wall_s"] for m in models], width, label="real (wall)", color="tab:blue")
    user = [parts[m]["cpu_user_s"] for m in models]
    left.bar([x + width for x in xs], user, width, label="CPU user", color="tab:orange")
    left.bar([x + width for x in xs], [parts[m]["cpu_system_s"] for m in models], width, bottom=user,
             label="CPU system", color="tab:red")
    if has_gpu:
        left.bar([x + 2 * width for x in xs], [parts[m]["gpu_s"] or 0.0 for m in models], width,
                 label="GPU busy (util x wall)", color="tab:green")
    left.set_xticks([x + width * (kinds - 1) / 2 for x in xs], models, rotation=30, ha="right", fontsize=8)
    left.set_ylabel("seconds")
    left.set_title("Real time against CPU time")
    left.legend(fontsize=7)
    width = 0.8 / max(1, len(models))
    for j, m in enumerate(models):
        walls = [(analysis["subjects"][s].get(m) or {}).get("wall_s") or 0.0 for s in subjects]
        right.bar([i + j * width for i in range(len(subjects))], walls, width, label=m)
    right.set_xticks([i + 0.4 - width / 2 for i in range(len(subjects))], subjects, rotation=45, ha="right",
                     fontsize=7)
    right.set_ylabel("wall time (s)")
    right.set_title("MMLU wall time per subject and model")
    right.legend(fontsize=7)
    fig.tight_layout()
    written.append(_save(fig, folder / "time.png", plt))
    return written


def time_parts(analysis: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per model the seconds time.png draws: wall, CPU user and system (the user share of cpu_s
    where a record predates the split), and GPU busy time (mean utilisation x wall) or None."""
    out: dict[str, dict[str, float | None]] = {}
    for model, f in analysis["models"].items():
        wall = f.get("wall_s") or 0.0
        cpu = f.get("cpu_s") or 0.0
        user, system = f.get("cpu_user_s"), f.get("cpu_system_s")
        if user is None or system is None:
            user, system = cpu, 0.0
        gpu = f.get("gpu_util_mean")
        out[model] = {"wall_s": wall, "cpu_user_s": user, "cpu_system_s": system,
                      "gpu_s": None if gpu is None else gpu / 100.0 * wall}
    return out


def _errors(rows: Any) -> tuple[list[float], list[float]]:
    """Error bar lengths below and above; the Wilson bound at k == n can sit a rounding error
    inside the accuracy, and matplotlib refuses a negative length."""
    low, high = [], []
    for r in rows:
        low.append(max(0.0, r["accuracy"] - r["ci_low"]))
        high.append(max(0.0, r["ci_high"] - r["accuracy"]))
    return low, high


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
