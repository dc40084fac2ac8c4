"""Typed configuration for every FairFleet part.

Each part receives its own section (``cfg.data``, ``cfg.tiers`` ...), never the root, so a
part cannot quietly depend on settings it does not own. Unknown keys are errors everywhere
(``extra="forbid"``) because a misspelt key that is silently ignored runs the wrong experiment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- data
class SyntheticConfig(StrictModel):
    """The embedded default world: no download, deterministic by the root seed."""

    n_users: PositiveInt = 2_000
    n_items: PositiveInt = 1_000
    n_groups: PositiveInt = 10
    target_interactions: PositiveInt = 60_000
    latent_dim: PositiveInt = 16
    popularity_exponent: PositiveFloat = 1.0
    activity_sigma: NonNegativeFloat = 1.0
    min_user_interactions: int = Field(5, ge=2)
    taste_temperature: PositiveFloat = 3.0
    chunk_size: PositiveInt = 2_000_000

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
    source: Literal["synthetic", "movielens"] = "synthetic"
    path: Optional[Path] = None
    cache_dir: Optional[Path] = None
    synthetic: SyntheticConfig = SyntheticConfig()
    click_threshold: float = Field(5.0, description="rating >= threshold is a click (RF²)")
    n_negatives: PositiveInt = Field(99, description="sampled negatives per leave-one-out test item")
    holdout_fraction: float = Field(0.2, gt=0.0, lt=1.0)

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

    mean: PositiveFloat
    std: NonNegativeFloat = 0.0


class TierProfileConfig(StrictModel):
    name: str = Field(min_length=1)
    share: PositiveFloat = Field(1.0, description="relative share of users the mapping aims for")
    compute_s_per_sample: Gaussian
    download_mbps: Gaussian
    upload_mbps: Gaussian


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
    profiles: list[TierProfileConfig] = Field(default_factory=_default_tiers, min_length=1)
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


MappingName = Literal[
    "random", "hetero-vlow", "hetero-low", "hetero-mid", "hetero-high", "hetero-vhigh", "dirichlet"
]


class TierMappingConfig(StrictModel):
    mapping: MappingName = "hetero-mid"
    alpha: Optional[PositiveFloat] = Field(None, description="Dirichlet α, only for mapping 'dirichlet'")
    balance: bool = True
    feedback: Literal["click", "implicit"] = "click"
    heterogeneity_top_items: PositiveInt = 100

    @model_validator(mode="after")
    def _alpha_only_for_dirichlet(self) -> "TierMappingConfig":
        if self.mapping == "dirichlet" and self.alpha is None:
            raise ValueError("mapping 'dirichlet' needs alpha")
        if self.mapping != "dirichlet" and self.alpha is not None:
            raise ValueError(f"alpha is fixed by the preset '{self.mapping}'; use mapping 'dirichlet'")
        return self


# --------------------------------------------------------------------------- model / FL
class ModelConfig(StrictModel):
    kind: Literal["gmf", "mlp", "neumf"] = "gmf"
    embedding_dim: PositiveInt = 16
    mlp_layers: list[PositiveInt] = Field(default_factory=lambda: [64, 32, 16], min_length=1)
    init_std: PositiveFloat = Field(0.1, description="std of the initial embedding vectors")


class FLConfig(StrictModel):
    """Defaults are the NCF recipe that learns on ML-100K (README, "Finding a recipe that
    learns"); RF²'s click-model recipe is client_lr 1, both scales 1, AdaGrad server lr 0.1."""

    rounds: PositiveInt = 20
    clients_per_round: PositiveInt = 100
    local_epochs: PositiveInt = 1
    client_lr: PositiveFloat = Field(3.0, description="client SGD lr of the dense (non-embedding) weights")
    item_lr_scale: PositiveFloat = Field(100.0, description="client lr multiplier for item embeddings")
    user_lr_scale: PositiveFloat = Field(30.0, description="client lr multiplier for the private user vector")
    loss_reduction: Literal["mean", "sum"] = "mean"
    negatives_per_positive: PositiveInt = 4
    server_optimizer: Literal["sgd", "adagrad"] = "sgd"
    server_lr: PositiveFloat = 1.0
    server_eps: PositiveFloat = Field(1e-3, description="AdaGrad's τ (Reddi et al. 2021)")
    overselect: NonNegativeFloat = Field(0.0, description="x in (1+x)·n selected clients")
    deadline_s: Optional[PositiveFloat] = None
    workers_per_tier: PositiveInt = 1
    worker_num_cpus: NonNegativeFloat = Field(
        0.0, description="CPUs Ray reserves per worker actor; 0 lets many single-threaded workers share 2 cores"
    )
    worker_max_restarts: int = Field(3, ge=0)
    eval_every: PositiveInt = 1
    checkpoint_every: PositiveInt = 5
    round_timeout_s: PositiveFloat = Field(300.0, description="wall-clock wait for workers before a round gives up on them")
    real_time_scale: NonNegativeFloat = Field(
        0.0, description="demo mode: workers sleep simulated latency x this factor (0 = off)"
    )


# --------------------------------------------------------------------------- retrieval / serve
class SyntheticEmbeddingsConfig(StrictModel):
    """Item and user vectors drawn directly (no training), for scale and for skewed cases."""

    n_items: PositiveInt = 20_000
    n_users: PositiveInt = 2_000
    dim: PositiveInt = 32
    n_groups: PositiveInt = 8
    group_spread: PositiveFloat = 1.0
    disliked_group: Optional[int] = Field(None, ge=0, description="a group every user scores low")
    dislike_strength: PositiveFloat = 2.0
    query_noise: NonNegativeFloat = 0.5
    heldout_temperature: PositiveFloat = 0.5

    @model_validator(mode="after")
    def _disliked_exists(self) -> "SyntheticEmbeddingsConfig":
        if self.disliked_group is not None and self.disliked_group >= self.n_groups:
            raise ValueError(f"disliked_group={self.disliked_group} but there are only {self.n_groups} groups")
        return self


class RetrievalConfig(StrictModel):
    """The fair retriever (FairSync): where vectors come from, how items are grouped, the
    exposure targets, the policy that sets the per-group score offsets, and the index layout."""

    source: Literal["run", "synthetic"] = "run"
    run_dir: Optional[Path] = Field(None, description="an fl_sim run folder (GMF); none: train one first")
    synthetic: SyntheticEmbeddingsConfig = SyntheticEmbeddingsConfig()
    group_by: Literal["genre", "popularity", "column"] = "genre"
    group_column: Optional[str] = None
    popularity_buckets: int = Field(5, ge=2)
    k: PositiveInt = 10
    max_k: PositiveInt = 100
    n_shards: PositiveInt = 2
    index: Literal["flat", "ivf"] = "flat"
    ivf_nlist: PositiveInt = 64
    ivf_nprobe: PositiveInt = 8
    ivf_overfetch: PositiveInt = 4
    policy: Literal["fairsync", "topk", "k_neighbor", "min_regularizer"] = "fairsync"
    exposure_share: float = Field(0.2, ge=0.0, le=1.0,
                                  description="m_g = share x T*K/G: the fraction of an equal split each group is owed")
    horizon: Optional[PositiveInt] = Field(None, description="T; default: the number of evaluation requests")
    dual_batch_size: PositiveInt = 32
    dual_lr: PositiveFloat = 0.01
    dual_optimizer: Literal["adam", "sgd"] = "adam"
    dual_variant: Literal["projected", "full"] = "projected"
    k_neighbor_groups: PositiveInt = 1
    min_regularizer_lambda: PositiveFloat = 1.0

    @model_validator(mode="after")
    def _consistent(self) -> "RetrievalConfig":
        if self.k > self.max_k:
            raise ValueError(f"k={self.k} exceeds max_k={self.max_k}")
        if self.group_by == "column" and not self.group_column:
            raise ValueError("group_by=column needs group_column (the item Parquet column to group by)")
        return self


class ServeConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)


# --------------------------------------------------------------------------- root
class SimConfig(StrictModel):
    name: str = "fairfleet"
    seed: int = Field(0, ge=0)
    output_dir: Path = Path("runs")
    data: DataConfig = DataConfig()
    tiers: TiersConfig = TiersConfig()
    tier_mapping: TierMappingConfig = TierMappingConfig()
    model: ModelConfig = ModelConfig()
    fl: FLConfig = FLConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    serve: ServeConfig = ServeConfig()
