"""PNG plots of evaluation records."""

from __future__ import annotations

from pathlib import Path


def plot_utility(records: list[dict], path, title: str = "Test utility against lambda") -> Path:
    """Utility against lambda, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in sorted({r["method"] for r in records}):
        rs = sorted((r for r in records if r["method"] == m), key=lambda r: r["lambda"])
        style = "--" if m in ("oracle", "random", "logging-policy") else "-"
        ax.plot([r["lambda"] for r in rs], [r["utility"] for r in rs], style, marker="o", ms=3, label=m)
    ax.set_xlabel("lambda (utility = quality - lambda * cost)")
    ax.set_ylabel("mean utility per query")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_frontier(records: list[dict], path, title: str = "Cost-quality frontier") -> Path:
    """Mean quality against mean cost per query, one line per method (its points are the lambdas)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, m in enumerate(sorted({r["method"] for r in records})):
        rs = sorted((r for r in records if r["method"] == m), key=lambda r: r["lambda"])
        ax.plot([r["cost"] for r in rs], [r["quality"] for r in rs], marker="o", ms=3, label=m,
                color=plt.cm.tab20(i % 20))
    ax.set_xlabel("mean cost per query (USD)")
    ax.set_ylabel("mean quality")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
