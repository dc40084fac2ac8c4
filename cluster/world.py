"""Build the simulated world a run needs from its config: data, feedback view, evaluation
splits, the tier mapping and the population of clients."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Optional

from configs.schema import SimConfig
from cluster.data.source import load_data
from cluster.data.splits import LeaveOneOut, TemporalHoldout, leave_one_out, temporal_holdout
from cluster.data.types import Dataset
from cluster.data.views import FeedbackView, make_view
from cluster.rng import stream
from cluster.tiers.heterogeneity import tier_heterogeneity
from cluster.tiers.latency import TierTable
from cluster.tiers.mapping import map_users_to_tiers
from cluster.tiers.population import Population


@dataclass(frozen=True)
class World:
    """The click view and its hold-out are built on first use: an NCF run never needs them, and
    at 1M clients they hold ~0.3 GB plus a sort of every interaction."""

    dataset: Dataset
    cache_folder: Optional[Path]
    implicit: FeedbackView
    leave_one_out: LeaveOneOut
    population: Population
    heterogeneity: float
    click_threshold: float
    holdout_fraction: float

    @cached_property
    def clicks(self) -> FeedbackView:
        return make_view(self.dataset.interactions, "click", self.click_threshold)

    @cached_property
    def click_holdout(self) -> TemporalHoldout:
        return temporal_holdout(self.clicks.interactions, self.holdout_fraction)

    def summary(self) -> dict:
        return {
            **self.dataset.summary(),
            "clicks": int((self.clicks.labels > 0).sum()),
            "click_rate": float(self.clicks.labels.mean()) if len(self.clicks.labels) else 0.0,
            "loo_test_users": int(len(self.leave_one_out.test_users)),
            "loo_negatives": int(self.leave_one_out.negatives.shape[1]),
            "loo_train_interactions": int(len(self.leave_one_out.train)),
            "holdout_train": int(len(self.click_holdout.train_rows)),
            "holdout_test": int(len(self.click_holdout.test_rows)),
            "tier_heterogeneity_js": self.heterogeneity,
            "tiers": self.population.tier_summary(),
        }


def build_world(cfg: SimConfig, use_cache: bool = True, progress: bool = False) -> World:
    """``progress``: a bar over the phases on stderr (at 1M clients the whole takes minutes)."""
    from tqdm import tqdm

    with tqdm(total=5, desc="world", unit="phase", disable=not progress) as bar:
        bar.set_postfix_str("data (generate or read the cache)")
        dataset, cache_folder = load_data(cfg.data, cfg.seed, use_cache=use_cache)
        bar.update()
        bar.set_postfix_str("view")
        implicit = make_view(dataset.interactions, "implicit", cfg.data.click_threshold)
        bar.update()
        bar.set_postfix_str("leave-one-out split")
        loo = leave_one_out(implicit.interactions, cfg.data.n_negatives, stream(cfg.seed, "leave_one_out"))
        bar.update()

        bar.set_postfix_str("tier mapping")
        tiers = TierTable.from_config(cfg.tiers)
        clicks = (
            make_view(dataset.interactions, "click", cfg.data.click_threshold)
            if cfg.tier_mapping.feedback == "click"
            else None
        )
        mapping_input = clicks.positives() if clicks is not None else implicit.interactions
        tier_of_user = map_users_to_tiers(
            cfg.tier_mapping, mapping_input, tiers.shares, stream(cfg.seed, "tier_mapping")
        )
        bar.update()
        bar.set_postfix_str("population")
        population = Population.build(tiers, tier_of_user, loo.train)
        heterogeneity = tier_heterogeneity(
            mapping_input, tier_of_user, tiers.n_tiers, cfg.tier_mapping.heterogeneity_top_items
        )
        bar.update()
    world = World(
        dataset,
        cache_folder,
        implicit,
        loo,
        population,
        heterogeneity,
        cfg.data.click_threshold,
        cfg.data.holdout_fraction,
    )
    if clicks is not None:
        world.__dict__["clicks"] = clicks  # already built for the mapping: the cached_property's slot
    return world
