"""What every job's results page shares beside the writer (``jobs/lib/results_page.py``): the
command that reruns the job, the data set's name as a title says it, the seeds stated plainly,
and a mean with its 95 % interval over seeds."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

from cluster.fairness.stats import ci95_half_width
from cluster.storage import Storage
from jobs.lib.results_page import ResultsPage, command_line, script_path



def job_command(job_file: "str | Path", argv: Optional[Sequence[str]] = None) -> str:
    """The command that reruns a job as a script, whoever started it (a test, another entry
    point): ``python jobs/<name>.py`` and the arguments its ``main`` received (None: this
    process's own)."""
    return command_line(argv, program=script_path(job_file))


def strategy_name(kind: str) -> str:
    """How a page names the strategy of ``fl.strategy.kind``: its plug-in's title."""
    from cluster.fl.strategies import plugin_of

    try:
        return plugin_of(kind).title
    except ValueError:
        return kind


_DATASET_TITLES = {"ml-100k": "MovieLens 100K", "ml-1m": "MovieLens 1M", "ml-10m": "MovieLens 10M",
                   "ml-20m": "MovieLens 20M", "ml-25m": "MovieLens 25M", "ml-32m": "MovieLens 32M"}


def dataset_title(name: str) -> str:
    """``ml-100k`` → MovieLens 100K, ``synthetic:2000x1000`` → synthetic, 2,000 users × 1,000 items."""
    if name in _DATASET_TITLES:
        return _DATASET_TITLES[name]
    if name.startswith("synthetic:"):
        users, _, items = name.partition(":")[2].partition("x")
        if users.isdigit() and items.isdigit():
            return f"synthetic, {int(users):,} users × {int(items):,} items"
    return name


def config_dataset_title(cfg) -> str:
    """The title of the data set a config names, read through the data cache (a hit costs a
    Parquet read, not a parse or a generation)."""
    from cluster.data.source import load_data

    dataset, _ = load_data(cfg.data, cfg.seed)
    return dataset_title(dataset.name)


def seeds_phrase(seeds: Sequence[int]) -> str:
    """``one seed (0)`` or ``3 seeds (0, 1, 2)``: what a page's figures rest on, plainly."""
    listed = ", ".join(str(s) for s in seeds)
    return f"one seed ({listed})" if len(seeds) == 1 else f"{len(seeds)} seeds ({listed})"


def spread_note(seeds: Sequence[int]) -> str:
    """The sentence under a table saying what its ± means, or that there is none."""
    if len(seeds) > 1:
        return (f"Mean over {seeds_phrase(seeds)}; ± is the 95 % Student-t half-width over seeds "
                f"({len(seeds) - 1} degree{'s' if len(seeds) > 2 else ''} of freedom).")
    return f"One seed ({seeds[0]}): no confidence interval; a difference read from it may be noise."


def mean_ci(values) -> tuple[float, float]:
    """Mean and 95 % half-width over seeds (NaN with one)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return float("nan"), float("nan")
    return sum(finite) / len(finite), ci95_half_width(finite)


def pm(mean: float, half: float, spec: str = ".4f", scale: float = 1.0, unit: str = "") -> str:
    """``mean ± half`` (``half`` NaN: the mean alone), both times ``scale``, then ``unit``."""
    if mean is None or not math.isfinite(mean):
        return "–"
    text = format(scale * mean, spec)
    if half == half and half is not None:
        return f"{text} ± {format(scale * half, spec.lstrip('+'))}{unit}"
    return f"{text}{unit}"


def verdict(mean: float, half: float) -> str:
    """Whether a paired difference's interval excludes 0."""
    if not (half == half):
        return "one seed: no interval"
    return "beyond noise" if abs(mean) > half else "within noise"


def write_page(page: ResultsPage, location: "Storage | str | Path") -> None:
    written = page.write(location)
    print(f"wrote results page {written}")


def grid_setting(cfg) -> str:
    """One sentence on what every cell of a grid ran."""
    strategy = cfg.fl.strategy.summary()
    return (f"Every cell: {plural(cfg.fl.rounds, 'round')} × {cfg.fl.clients_per_round} clients per round, "
            f"strategy {strategy}, uploads `{cfg.fl.upload.kind}`, {cfg.tier_mapping.feedback} feedback.")


def plural(n: int, word: str) -> str:
    """``1 round``, ``5 rounds``."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"
