"""Heterogeneity of the six RF² tier-mapping presets on a data set (default: MovieLens 100K).

    python jobs/tier_heterogeneity.py --config configs/ml100k.yaml [--seeds 5]

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


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = config_parser(first_paragraph(__doc__), default_config="configs/ml100k.yaml")
    parser.add_argument("--seeds", type=int, default=5, help="mappings drawn per preset (default: %(default)s)")
    args = parser.parse_args(argv)
    cfg = load_or_exit(args)
    dataset, _ = load_data(cfg.data, cfg.seed)
    view = make_view(dataset.interactions, cfg.tier_mapping.feedback, cfg.data.click_threshold)
    clicks = view.positives() if cfg.tier_mapping.feedback == "click" else view.interactions
    tiers = TierTable.from_config(cfg.tiers)
    print(f"{dataset.name}: {clicks.n_users} users, {len(clicks):,} {cfg.tier_mapping.feedback} interactions, "
          f"top {cfg.tier_mapping.heterogeneity_top_items} items, {args.seeds} seeds")
    print(f"{'mapping':<14}{'JS divergence':>22}   tier sizes (seed {cfg.seed})")
    for preset in PRESETS:
        mapping_cfg = cfg.tier_mapping.model_copy(update={"mapping": preset, "alpha": None})
        values, first_sizes = [], None
        for offset in range(args.seeds):
            tier_of_user = map_users_to_tiers(mapping_cfg, clicks, tiers.shares, stream(cfg.seed + offset, "tier_mapping"))
            values.append(tier_heterogeneity(clicks, tier_of_user, tiers.n_tiers, cfg.tier_mapping.heterogeneity_top_items))
            if first_sizes is None:
                first_sizes = np.bincount(tier_of_user, minlength=tiers.n_tiers).tolist()
        print(f"{preset:<14}{np.mean(values):>14.4f} ± {np.std(values):.4f}   {first_sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
