"""matplotlib for the jobs' figures: a file backend (no display on a cluster node), rendered in
memory and written to the storage in one atomic write, so a killed job never leaves half a figure."""

from __future__ import annotations

import io
from pathlib import Path

from cluster.storage import Storage, as_storage


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, target: Storage | Path) -> None:
    """``target``: the PNG file's location (a storage path or a local one)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    as_storage(target).write_bytes("", buffer.getvalue())
