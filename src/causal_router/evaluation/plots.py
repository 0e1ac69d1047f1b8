"""PNG plots of evaluation records (one line per method)."""

from __future__ import annotations

from pathlib import Path

#: Reference policies, drawn dashed.
REFERENCES = ("oracle", "random", "logging-policy", "full-feedback")


def _plot(records: list[dict], x: str, y: str, path, xlabel: str, ylabel: str, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, m in enumerate(sorted({r["method"] for r in records})):
        rs = sorted((r for r in records if r["method"] == m), key=lambda r: r["lambda"])
        ax.plot([r[x] for r in rs], [r[y] for r in rs], "--" if m in REFERENCES else "-", marker="o", ms=3,
                label=m, color=plt.cm.tab20(i % 20))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_utility(records: list[dict], path, title: str = "Test utility against lambda") -> Path:
    """Mean utility per query against lambda."""
    return _plot(records, "lambda", "utility", path, "lambda (utility = quality - lambda * cost)",
                 "mean utility per query", title)


def plot_frontier(records: list[dict], path, title: str = "Cost-quality frontier") -> Path:
    """Mean quality against mean cost per query (a method's points are its lambdas)."""
    return _plot(records, "cost", "quality", path, "mean cost per query (USD)", "mean quality", title)
