"""Measure the heterogeneity of the six RF² tier-mapping presets on a data set (default: MovieLens 100K).

    python jobs/tier_heterogeneity.py --config configs/ml100k.yaml [--seeds 5] [--report PAGE.md]

Prints, per preset, the mean pairwise Jensen–Shannon divergence between the tiers' click
distributions over the most-clicked items (mean ± std over seeds) and the tier sizes.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from typing import Optional, Sequence

import numpy as np

from cluster.data.source import load_data
from cluster.data.views import make_view
from cluster.rng import stream
from cluster.tiers.heterogeneity import tier_heterogeneity
from cluster.tiers.latency import TierTable
from cluster.tiers.mapping import PRESETS, map_users_to_tiers
from jobs.lib.cli import config_parser, load_or_exit, run_guarded, first_paragraph
from jobs.lib.job_page import dataset_title, job_command, mean_ci, pm, spread_note, write_page
from jobs.lib.results_page import ResultsPage, add_report_argument, markdown_table


def heterogeneity_page(command: str, dataset: str, feedback: str, top_items: int, seeds: list[int],
                       results: dict[str, tuple[list[float], list[int]]]) -> ResultsPage:
    """``results``: per preset, the divergence of each seed's mapping and the first seed's tier sizes."""
    page = ResultsPage(
        title=f"Tier-mapping heterogeneity on {dataset}", command=command, seeds=seeds,
        intro=(f"Mean pairwise Jensen–Shannon divergence (base 2) between the tiers' {feedback} distributions over "
               f"the {top_items} items with the most {feedback} interactions, one mapping drawn per preset and seed. "
               f"{spread_note(seeds)}"))
    rows = []
    for preset, (values, sizes) in results.items():
        mean, half = mean_ci(values)
        rows.append([preset, pm(mean, half), f"{np.std(values, ddof=1):.4f}" if len(values) > 1 else "–",
                     f"{min(values):.4f} – {max(values):.4f}", ", ".join(f"{n:,}" for n in sizes)])
    page.add("Divergence per preset", markdown_table(
        ["mapping", "JS divergence", "std over seeds", "range", f"tier sizes (seed {seeds[0]})"], rows))
    means = {preset: float(np.mean(values)) for preset, (values, _) in results.items()}
    lines = [f"- From most to least heterogeneous by mean: {', '.join(sorted(means, key=means.get, reverse=True))}."]
    hetero = [p for p in ("hetero-vhigh", "hetero-high", "hetero-mid", "hetero-low", "hetero-vlow") if p in means]
    if len(hetero) > 1:
        falling = all(means[a] >= means[b] for a, b in zip(hetero, hetero[1:]))
        lines.append(f"- The divergence {'falls' if falling else 'does not fall'} monotonically from {hetero[0]} to "
                     f"{hetero[-1]} (means).")
    if "random" in means and hetero:
        lines.append(f"- {hetero[0]} gives {means[hetero[0]] / max(means['random'], 1e-12):.1f}x the divergence of "
                     f"random ({means[hetero[0]]:.4f} against {means['random']:.4f}); random draws every tier's users from "
                     "the same population, so its divergence is what finite samples alone give.")
    page.add("What the numbers show", "\n".join(lines))
    return page


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = config_parser(first_paragraph(__doc__), default_config="configs/ml100k.yaml")
    parser.add_argument("--seeds", type=int, default=5, help="mappings drawn per preset (default: %(default)s)")
    add_report_argument(parser)
    args = parser.parse_args(argv)
    cfg = load_or_exit(args)
    dataset, _ = load_data(cfg.data, cfg.seed)
    view = make_view(dataset.interactions, cfg.tier_mapping.feedback, cfg.data.click_threshold)
    clicks = view.positives() if cfg.tier_mapping.feedback == "click" else view.interactions
    tiers = TierTable.from_config(cfg.tiers)
    print(f"{dataset.name}: {clicks.n_users} users, {len(clicks):,} {cfg.tier_mapping.feedback} interactions, "
          f"top {cfg.tier_mapping.heterogeneity_top_items} items, {args.seeds} seeds")
    print(f"{'mapping':<14}{'JS divergence':>22}   tier sizes (seed {cfg.seed})")
    results = {}
    for preset in PRESETS:
        mapping_cfg = cfg.tier_mapping.model_copy(update={"mapping": preset, "alpha": None})
        values, first_sizes = [], None
        for offset in range(args.seeds):
            tier_of_user = map_users_to_tiers(mapping_cfg, clicks, tiers.shares, stream(cfg.seed + offset, "tier_mapping"))
            values.append(tier_heterogeneity(clicks, tier_of_user, tiers.n_tiers, cfg.tier_mapping.heterogeneity_top_items))
            if first_sizes is None:
                first_sizes = np.bincount(tier_of_user, minlength=tiers.n_tiers).tolist()
        print(f"{preset:<14}{np.mean(values):>14.4f} ± {np.std(values):.4f}   {first_sizes}")
        results[preset] = (values, first_sizes)
    if args.report:
        seeds = [cfg.seed + offset for offset in range(args.seeds)]
        write_page(heterogeneity_page(job_command(__file__, argv), dataset_title(dataset.name), cfg.tier_mapping.feedback,
                                      cfg.tier_mapping.heterogeneity_top_items, seeds, results), args.report)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
