"""Typed configuration for every FairFleet part.

Each part receives its own section (``cfg.data``, ``cfg.tiers`` ...), never the root, so a
part cannot quietly depend on settings it does not own. Unknown keys are errors everywhere
(``extra="forbid"``) because a misspelt key that is silently ignored runs the wrong experiment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, field_validator, model_validator

from configs.base import Location, StrictModel
from configs.fl_schema import (
    Cali3FConfig,
    CEAGConfig,
    DittoConfig,
    FairnessConfig,
    FedAvgConfig,
    FedProxConfig,
    FLConfig,
    FLRuntimeConfig,
    NoFairness,
    OptimizationConfig,
    StrategyConfig,
    levels_of,
    optimization,
)
from configs.retrieval_schema import RetrievalConfig, SyntheticEmbeddingsConfig

# Re-exported: the sections' own modules define them; most callers import them from here.
__all__ = [
    "CEAGConfig",
    "Cali3FConfig",
    "DittoConfig",
    "FLConfig",
    "FLRuntimeConfig",
    "FairnessConfig",
    "FedAvgConfig",
    "NoFairness",
    "OptimizationConfig",
    "RetrievalConfig",
    "SimConfig",
    "StrategyConfig",
    "SyntheticEmbeddingsConfig",
    "levels_of",
    "optimization",
]


# --------------------------------------------------------------------------- data
class SyntheticConfig(StrictModel):
    """The embedded default world: no download, deterministic by the root seed."""

    n_users: PositiveInt = Field(2_000, description="users (clients) in the world")
    n_items: PositiveInt = Field(1_000, description="items in the catalogue")
    n_groups: PositiveInt = Field(
        10, description="item groups (the synthetic genres), each around its own latent centroid"
    )
    target_interactions: PositiveInt = Field(
        60_000,
        description="interactions in all, roughly: each user has min_user_interactions plus a log-normal "
        "share of the rest, at most half the catalogue",
    )
    latent_dim: PositiveInt = Field(
        16,
        description="length of the latent taste and item vectors that decide who "
        "interacts with what and how it is rated",
    )
    popularity_exponent: PositiveFloat = Field(
        1.0,
        description="power law of item popularity: inside its group, the item of popularity rank r is drawn "
        "in proportion to r^-exponent",
    )
    activity_sigma: NonNegativeFloat = Field(
        1.0, description="σ of the log-normal user activity: larger, a heavier tail of very active users"
    )
    min_user_interactions: int = Field(
        5, ge=2, description="interactions every user has at least (needs n_items >= 2x this)"
    )
    taste_temperature: PositiveFloat = Field(
        3.0,
        description="how strongly a user's taste picks the groups its items come from (the scale of the "
        "taste-centroid cosine in the group softmax; popularity mass is added to it)",
    )
    chunk_size: PositiveInt = Field(
        2_000_000,
        description="not read by the generator, which works in fixed blocks of 32,768 users; changing "
        "it changes only the data cache key",
    )

    @model_validator(mode="after")
    def _enough_items(self) -> "SyntheticConfig":
        if self.min_user_interactions > self.n_items // 2:
            raise ValueError(
                f"min_user_interactions={self.min_user_interactions} needs n_items >= "
                f"{2 * self.min_user_interactions} (got {self.n_items})"
            )
        if self.target_interactions < self.n_users * self.min_user_interactions:
            raise ValueError(
                f"target_interactions={self.target_interactions} is below "
                f"n_users * min_user_interactions = {self.n_users * self.min_user_interactions}"
            )
        return self


class DataConfig(StrictModel):
    source: Literal["synthetic", "movielens"] = Field(
        "synthetic",
        description="synthetic: the embedded generator (data.synthetic); movielens: the MovieLens files in data.path",
    )
    path: Optional[Path] = Field(
        None, description="folder of MovieLens files (ml-100k, ml-1m or the CSV layout); needed by source movielens"
    )
    cache_dir: Optional[Path] = Field(
        None,
        description="folder of the Parquet data cache (none: $FAIRFLEET_CACHE, else "
        "$XDG_CACHE_HOME/fairfleet or ~/.cache/fairfleet)",
    )
    synthetic: SyntheticConfig = Field(SyntheticConfig(), description="the generator's settings, for source synthetic")
    click_threshold: float = Field(5.0, description="rating >= threshold is a click (RF²)")
    n_negatives: PositiveInt = Field(99, description="sampled negatives per leave-one-out test item")
    holdout_fraction: float = Field(
        0.2,
        gt=0.0,
        lt=1.0,
        description="click models: the latest share of each "
        "user's ratings held out as test rows (at least one, and one left to train)",
    )

    @field_validator("path", "cache_dir", mode="before")
    @classmethod
    def _expand(cls, value):
        import os

        if value is None:
            return None
        return Path(os.path.expandvars(os.path.expanduser(str(value))))

    @model_validator(mode="after")
    def _path_for_movielens(self) -> "DataConfig":
        if self.source == "movielens" and self.path is None:
            raise ValueError("source 'movielens' needs data.path (a folder of MovieLens files)")
        return self


# --------------------------------------------------------------------------- tiers
class Gaussian(StrictModel):
    """A per-client, per-round draw; negative or tiny draws are floored by the latency model."""

    mean: PositiveFloat = Field(description="mean of the draw")
    std: NonNegativeFloat = Field(0.0, description="standard deviation of the draw (0: always the mean)")


class TierProfileConfig(StrictModel):
    name: str = Field(
        min_length=1, description="the tier's name, unique; optimization levels and results name tiers by it"
    )
    share: PositiveFloat = Field(1.0, description="relative share of users the mapping aims for")
    compute_s_per_sample: Gaussian = Field(
        description="seconds of local training per sample, drawn per client and round"
    )
    download_mbps: Gaussian = Field(description="download bandwidth in Mbit/s, drawn per client and round")
    upload_mbps: Gaussian = Field(description="upload bandwidth in Mbit/s, drawn per client and round")


def _default_tiers() -> list[TierProfileConfig]:
    # Orders of magnitude after the AI-Benchmark measurements RF² relies on: low-end phones
    # train 2-6x slower than high-end ones and their bandwidth is up to 100x lower.
    return [
        TierProfileConfig(
            name="low",
            compute_s_per_sample=Gaussian(mean=0.010, std=0.002),
            download_mbps=Gaussian(mean=2.0, std=0.5),
            upload_mbps=Gaussian(mean=0.5, std=0.15),
        ),
        TierProfileConfig(
            name="mid",
            compute_s_per_sample=Gaussian(mean=0.005, std=0.001),
            download_mbps=Gaussian(mean=20.0, std=5.0),
            upload_mbps=Gaussian(mean=5.0, std=1.5),
        ),
        TierProfileConfig(
            name="high",
            compute_s_per_sample=Gaussian(mean=0.002, std=0.0004),
            download_mbps=Gaussian(mean=100.0, std=20.0),
            upload_mbps=Gaussian(mean=50.0, std=10.0),
        ),
    ]


class TiersConfig(StrictModel):
    profiles: list[TierProfileConfig] = Field(
        default_factory=_default_tiers,
        min_length=1,
        description="the device tiers, one latency profile each; a tier's place in the list is its id",
    )
    latency_floor_fraction: float = Field(
        0.1, gt=0.0, le=1.0, description="a Gaussian draw never goes below this fraction of its mean"
    )

    @field_validator("profiles")
    @classmethod
    def _unique_names(cls, profiles: list[TierProfileConfig]) -> list[TierProfileConfig]:
        names = [p.name for p in profiles]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"tier names must be unique, repeated: {duplicates}")
        return profiles


MappingName = Literal["random", "hetero-vlow", "hetero-low", "hetero-mid", "hetero-high", "hetero-vhigh", "dirichlet"]


class TierMappingConfig(StrictModel):
    mapping: MappingName = Field(
        "hetero-mid",
        description="how users are mapped to tiers: random, one of RF²'s Dirichlet presets from "
        "hetero-vlow (α 5000, close to random) to hetero-vhigh (α 0.005, the tiers' "
        "tastes differ most), or dirichlet with alpha",
    )
    alpha: Optional[PositiveFloat] = Field(None, description="Dirichlet α, only for mapping 'dirichlet'")
    balance: bool = Field(
        True,
        description="Dirichlet mappings: each draw's largest probability goes to the tier "
        "furthest below its share (RF² Algorithm 1's balancing)",
    )
    feedback: Literal["click", "implicit"] = Field(
        "click",
        description="the interactions the mapping visits: click (ratings >= data.click_threshold) or "
        "implicit (every rating)",
    )
    heterogeneity_top_items: PositiveInt = Field(
        100,
        description="most-clicked items over which the tiers' click distributions are compared (the "
        "reported tier heterogeneity, a mean Jensen-Shannon divergence)",
    )

    @model_validator(mode="after")
    def _alpha_only_for_dirichlet(self) -> "TierMappingConfig":
        if self.mapping == "dirichlet" and self.alpha is None:
            raise ValueError("mapping 'dirichlet' needs alpha")
        if self.mapping != "dirichlet" and self.alpha is not None:
            raise ValueError(f"alpha is fixed by the preset '{self.mapping}'; use mapping 'dirichlet'")
        return self


# --------------------------------------------------------------------------- model / FL
CLICK_MODELS = ("dlrm", "din")


class ModelConfig(StrictModel):
    """NCF models (gmf, mlp, neumf) rank items for leave-one-out HR/NDCG; click models (dlrm, din)
    predict RF²'s click label (5 stars) and are measured by AUC."""

    kind: Literal["gmf", "mlp", "neumf", "dlrm", "din"] = Field(
        "gmf", description="the model every client trains: NCF gmf, mlp or neumf, or click model dlrm or din"
    )
    embedding_dim: PositiveInt = Field(16, description="length of every user and item embedding vector")
    mlp_layers: list[PositiveInt] = Field(
        default_factory=lambda: [64, 32, 16],
        min_length=1,
        description="widths of the MLP tower's hidden layers (mlp, neumf)",
    )
    init_std: PositiveFloat = Field(0.1, description="std of the initial embedding vectors")
    history_len: PositiveInt = Field(50, description="click models: the most recent clicks a sample sees")
    bottom_hidden: list[PositiveInt] = Field(default_factory=lambda: [16], min_length=1, description="DLRM")
    attention_hidden: list[PositiveInt] = Field(default_factory=lambda: [64, 16], min_length=1, description="DIN")
    top_hidden: list[PositiveInt] = Field(default_factory=lambda: [256], min_length=1, description="DLRM and DIN")

    @property
    def is_click(self) -> bool:
        return self.kind in CLICK_MODELS


class ServeConfig(StrictModel):
    host: str = Field(
        "127.0.0.1",
        description="not read by any job: Ray Serve takes the HTTP host from the "
        "Serve config's http_options (configs/serve/*.yaml)",
    )
    port: int = Field(
        8000,
        ge=1,
        le=65535,
        description="not read by any job: Ray Serve takes the HTTP port from "
        "the Serve config's http_options (configs/serve/*.yaml)",
    )


# --------------------------------------------------------------------------- root
class SimConfig(StrictModel):
    name: str = Field(
        "fairfleet",
        description="the experiment's name, part of every run folder's name (<job>-<name>-<time>-<config hash>)",
    )
    seed: int = Field(
        0,
        ge=0,
        description="the root seed: every random stream of a run (data, tier mapping, "
        "selection, latency, training) derives from it",
    )
    storage: Location = Field(
        "runs",
        description="where every file a job writes or reads at run time lives: a local "
        "path (NFS included) or a URI (file://, s3://bucket/prefix?endpoint_override=..., gs://)",
    )
    data: DataConfig = Field(DataConfig(), description="the data set (synthetic or MovieLens) and how it is split")
    tiers: TiersConfig = Field(TiersConfig(), description="the device tiers and their latency profiles")
    tier_mapping: TierMappingConfig = Field(TierMappingConfig(), description="how users are mapped to tiers")
    model: ModelConfig = Field(ModelConfig(), description="the recommendation model")
    fl: FLConfig = Field(
        FLConfig(),
        description="the federated rounds, the tier-aware optimization, the fairness mitigation and the strategy",
    )
    retrieval: RetrievalConfig = Field(RetrievalConfig(), description="the fair retriever (FairSync)")
    serve: ServeConfig = Field(
        ServeConfig(), description="an HTTP address no job reads; Ray Serve takes its own from the Serve config"
    )

    @model_validator(mode="after")
    def _optimization_fits(self) -> "SimConfig":
        opt = self.fl.optimization
        names = [p.name for p in self.tiers.profiles]
        excluded = set(getattr(opt, "excluded_tiers", ()))
        unknown = sorted((set(levels_of(opt)) | excluded) - set(names))
        if unknown:
            raise ValueError(f"fl.optimization names tiers {unknown} that tiers.profiles lacks (tiers: {names})")
        if excluded >= set(names):
            raise ValueError("fl.optimization excludes every tier: no client could train")
        fairness = self.fl.fairness
        if (
            isinstance(fairness, CEAGConfig)
            and not self.model.is_click
            and (fairness.measure, fairness.proxy) != ("pairwise", "loss")
        ):
            raise ValueError(
                f"fl.fairness with an NCF model ({self.model.kind!r}) needs measure 'pairwise' and proxy "
                f"'loss': an NCF client has no click labels to be accurate on, only positives ranked "
                f"against sampled negatives, and the pairwise-logistic upload is built for click models"
            )
        if (
            isinstance(fairness, CEAGConfig)
            and fairness.reference_accuracy is not None
            and set(fairness.reference_accuracy) != set(names)
        ):
            raise ValueError(
                f"fl.fairness.reference_accuracy must name every tier {names}, "
                f"got {sorted(fairness.reference_accuracy)}"
            )
        if opt.kind == "channel" and self.model.kind == "gmf":
            raise ValueError(
                "fl.optimization kind 'channel' needs a model with hidden layers (mlp, neumf, dlrm, din), "
                "not 'gmf': GMF has no hidden layer to narrow"
            )
        if opt.kind == "subsample" and not self.model.is_click:
            raise ValueError(
                f"fl.optimization kind 'subsample' needs a click model (dlrm, din), not "
                f"{self.model.kind!r}: an NCF client's round is its positives and their sampled negatives"
            )
        self._strategy_fits()
        return self

    def _private_fits(self) -> None:
        """What a DP guarantee does not cover, refused with the reason."""
        kind = self.fl.privacy.kind
        why = {
            "cali3f": "Cali3F's cluster models and FastAgg read each delegate's own rows, which the "
            "clipped, noised sum does not give",
            "scaffold": "SCAFFOLD's control variates are a second per-client upload the accountant does not cover",
        }.get(self.fl.strategy.kind)
        if why:
            raise ValueError(f"fl.privacy {kind} does not combine with fl.strategy {self.fl.strategy.kind!r}: {why}")
        if self.fl.fairness.kind != "none":
            raise ValueError(
                f"fl.privacy {kind} does not combine with fl.fairness: CEAG re-weights clients by "
                "tier, and every client must weigh the same for the noise to cover it"
            )
        if kind == "central_dp" and self.fl.secure_aggregation.kind != "none":
            raise ValueError(
                "fl.privacy central_dp does not combine with fl.secure_aggregation: the server clips "
                "each update, which it never sees under secure aggregation; use fl.privacy "
                "distributed_dp (clipping and noise on the devices)"
            )
        if kind == "local_dp" and self.fl.secure_aggregation.kind != "none":
            raise ValueError(
                "fl.privacy local_dp does not combine with fl.secure_aggregation: noise on the devices "
                "under secure aggregation is fl.privacy distributed_dp, accounted on the sum"
            )
        if kind == "local_dp" and self.fl.upload.kind != "dense":
            raise ValueError(
                f"fl.privacy local_dp needs fl.upload=dense (got {self.fl.upload.kind!r}): which rows a "
                "device sends would show its items, and the noise does not cover that"
            )
        if kind == "distributed_dp" and self.fl.secure_aggregation.kind == "none":
            raise ValueError(
                "fl.privacy distributed_dp needs fl.secure_aggregation (e.g. fl.secure_aggregation=secagg): "
                "without it the server sees each device's share of the noise on its own, too little to protect it"
            )

    def _availability_fits(self) -> None:
        availability = self.fl.availability
        if availability.kind == "diurnal":
            unknown = set(availability.available_share) - {p.name for p in self.tiers.profiles}
            if unknown:
                raise ValueError(
                    f"fl.availability.available_share names unknown tier(s) {sorted(unknown)}; tiers: "
                    f"{[p.name for p in self.tiers.profiles]}"
                )

    def _asynchronous_fits(self) -> None:
        """What has no meaning in asynchronous mode, refused with the reason."""
        if self.fl.mode.kind != "async":
            return
        why = {
            "cali3f": "Cali3F re-clusters and picks delegates once per round, and asynchronous steps have no rounds",
            "scaffold": "SCAFFOLD's control variates assume every update was computed at the current model",
        }.get(self.fl.strategy.kind)
        if why:
            raise ValueError(f"fl.mode async does not combine with fl.strategy {self.fl.strategy.kind!r}: {why}")
        refusals = [
            (self.fl.fairness.kind != "none", "fl.fairness: CEAG's dual step reads one round's per-tier measures"),
            (self.fl.privacy.kind != "none", "fl.privacy: the accountants assume rounds of sampled clients"),
            (
                self.fl.secure_aggregation.kind != "none",
                "fl.secure_aggregation: its masks cancel within a round's cohort",
            ),
            (self.fl.effective_overselect > 0, "fl.overselect: no round waits for the fastest; every device reports"),
            (self.fl.deadline_s is not None, "fl.deadline_s: no round has a deadline; every device reports"),
        ]
        for refused, why in refusals:
            if refused:
                raise ValueError(f"fl.mode async does not combine with {why}")

    def _secure_fits(self) -> None:
        """What the server cannot compute from secure sums, refused with the reason."""
        secure = self.fl.secure_aggregation
        if secure.kind == "none":
            return
        why = {
            "cali3f": "Cali3F clusters devices by their own vectors and FastAgg weighs each delegate's own "
            "rows, which a secure sum hides",
            "scaffold": "SCAFFOLD's control-variate step needs the uploads as separate per-client values",
        }.get(self.fl.strategy.kind)
        if why:
            raise ValueError(
                f"fl.secure_aggregation does not combine with fl.strategy {self.fl.strategy.kind!r}: {why}"
            )
        if self.fl.fairness.kind != "none":
            raise ValueError(
                "fl.secure_aggregation does not combine with fl.fairness: CEAG re-weights each client by its "
                "own reported bits, which a secure sum hides"
            )
        if self.fl.upload.kind != "dense":
            raise ValueError(
                f"fl.secure_aggregation sums uploads of one fixed public shape: set fl.upload=dense (got "
                f"{self.fl.upload.kind!r}, whose shape shows which rows a device touched)"
            )
        unknown = set(secure.dropout) - {p.name for p in self.tiers.profiles}
        if unknown:
            raise ValueError(
                f"fl.secure_aggregation.dropout names unknown tier(s) {sorted(unknown)}; tiers: "
                f"{[p.name for p in self.tiers.profiles]}"
            )

    def _strategy_fits(self) -> None:
        strategy = self.fl.strategy.kind
        # isinstance, not the kind, so the type checker knows this strategy has a mu.
        prox = self.fl.strategy
        if isinstance(prox, FedProxConfig) and prox.mu > 0:
            # A step of lr·(g + μ(w − w₀)) overshoots w₀ and grows when lr·μ ≥ 2: with NCF's item rate
            # (client_lr × item_lr_scale) that happens at a μ far below FedProx's usual values.
            rate, what = (
                (self.fl.client_lr, "fl.client_lr")
                if self.model.is_click
                else max(
                    (self.fl.client_lr, "fl.client_lr"),
                    (self.fl.client_lr * self.fl.item_lr_scale, "fl.client_lr × fl.item_lr_scale"),
                )
            )
            if rate * prox.mu >= 2:
                raise ValueError(
                    f"fl.strategy.mu {prox.mu:g} × the largest shared learning rate ({what} = "
                    f"{rate:g}) is {rate * prox.mu:g}; below 2 the proximal term pulls a client "
                    f"toward the global model, at 2 or more it overshoots and diverges: take "
                    f"mu < {2 / rate:.3g}"
                )
        if strategy == "cali3f" and self.fl.optimization.kind == "channel":
            raise ValueError(
                "fl.strategy 'cali3f' does not combine with fl.optimization kind 'channel': a delegate "
                "trains its cluster's full dense part, which a phone narrowed for speed does not hold"
            )
        if strategy == "ditto" and self.fl.optimization.kind == "channel":
            raise ValueError(
                "fl.strategy 'ditto' does not combine with fl.optimization kind 'channel': a Ditto "
                "phone keeps and serves its own full-width model, which a phone narrowed for speed "
                "does not run"
            )
        if strategy == "scaffold" and self.fl.optimization.kind == "channel":
            raise ValueError(
                "fl.strategy 'scaffold' does not combine with fl.optimization kind 'channel': a control "
                "variate corrects the whole dense part, which a phone narrowed for speed does not train"
            )
        if self.fl.privacy.kind != "none":
            self._private_fits()
        self._secure_fits()
        self._asynchronous_fits()
        self._availability_fits()
        if strategy not in ("fedavg", "fedprox", "scaffold") and self.fl.fairness.kind != "none":
            raise ValueError(
                f"fl.fairness kind {self.fl.fairness.kind!r} needs a strategy that serves one global "
                f"model (fedavg, fedprox, scaffold), not "
                f"{strategy!r}: it bounds the global model's per-tier measure against a reference "
                f"run's, but {strategy!r} serves (and evaluates) each client its own model"
            )
