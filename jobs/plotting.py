"""matplotlib for the jobs' figures: a file backend (no display on a cluster node) and atomic PNG
writes, so a killed job never leaves half a figure."""

from __future__ import annotations

from pathlib import Path

from cluster.atomic import atomic_path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
