"""Typed configuration for every FairFleet part.

Each part receives its own section (``cfg.data``, ``cfg.tiers`` ...), never the root, so a
part cannot quietly depend on settings it does not own. Unknown keys are errors everywhere
(``extra="forbid"``) because a misspelt key that is silently ignored runs the wrong experiment.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Literal, Optional

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)


def _location(value):
    """A local path (``~`` and ``$VARS`` expanded) or a URI, kept as a string: a URI is no Path."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str) and "://" not in value:
        value = os.path.expandvars(os.path.expanduser(value))
    return value


Location = Annotated[str, BeforeValidator(_location)]


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
CLICK_MODELS = ("dlrm", "din")


class ModelConfig(StrictModel):
    """NCF models (gmf, mlp, neumf) rank items for leave-one-out HR/NDCG; click models (dlrm, din)
    predict RF²'s click label (5 stars) and are measured by AUC."""

    kind: Literal["gmf", "mlp", "neumf", "dlrm", "din"] = "gmf"
    embedding_dim: PositiveInt = 16
    mlp_layers: list[PositiveInt] = Field(default_factory=lambda: [64, 32, 16], min_length=1)
    init_std: PositiveFloat = Field(0.1, description="std of the initial embedding vectors")
    history_len: PositiveInt = Field(50, description="click models: the most recent clicks a sample sees")
    bottom_hidden: list[PositiveInt] = Field(default_factory=lambda: [16], min_length=1, description="DLRM")
    attention_hidden: list[PositiveInt] = Field(default_factory=lambda: [64, 16], min_length=1, description="DIN")
    top_hidden: list[PositiveInt] = Field(default_factory=lambda: [256], min_length=1, description="DLRM and DIN")

    @property
    def is_click(self) -> bool:
        return self.kind in CLICK_MODELS


OptimizationKind = Literal["none", "exclude", "overselect", "prune", "quant", "quants", "channel"]
_COMPRESSIONS = ("prune", "quant", "quants", "channel")


class OptimizationConfig(StrictModel):
    """A tier-aware speed-up (RF² Table 1). Give ``preset`` (a name from
    ``configs.presets.OPTIMIZATION_PRESETS``, or the bare name as the whole value:
    ``fl.optimization=prune-1:4:16``), or ``kind`` with its settings. ``levels`` maps a tier name
    to its prune rate, bits or width; a tier left out is not optimized."""

    preset: Optional[str] = None
    kind: OptimizationKind = "none"
    levels: dict[str, float] = Field(default_factory=dict)
    excluded_tiers: list[str] = Field(default_factory=list)
    overselect: NonNegativeFloat = Field(0.2, description="kind overselect: x in (1+x)·n selected, the slowest dropped")
    rescale_pruned: bool = Field(False, description="scale kept entries by 1/(1-rate) (unbiased); RF² does not")

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, value):
        from configs.presets import OPTIMIZATION_PRESETS

        if isinstance(value, str):
            value = {"preset": value}
        if not isinstance(value, dict) or value.get("preset") is None:
            return value
        name = value["preset"]
        if name not in OPTIMIZATION_PRESETS:
            raise ValueError(f"unknown preset {name!r}; known: {', '.join(OPTIMIZATION_PRESETS)}")
        preset = OPTIMIZATION_PRESETS[name]
        # A resolved config written by a run repeats the preset's own values: those agree.
        clashing = sorted(k for k in value if k in preset and value[k] != preset[k])
        if clashing:
            raise ValueError(f"preset {name!r} sets {clashing} itself; drop them or drop the preset")
        return {**value, **preset}

    @model_validator(mode="after")
    def _levels_fit_kind(self) -> "OptimizationConfig":
        if self.levels and self.kind not in _COMPRESSIONS:
            raise ValueError(f"levels apply to {_COMPRESSIONS}, not to kind {self.kind!r}")
        if self.excluded_tiers and self.kind != "exclude":
            raise ValueError(f"excluded_tiers apply to kind 'exclude', not to {self.kind!r}")
        if self.kind == "exclude" and not self.excluded_tiers:
            raise ValueError("kind 'exclude' needs excluded_tiers")
        checks = {
            "prune": (lambda v: 0.0 <= v < 1.0, "a pruned share in [0, 1)"),
            "quant": (lambda v: float(v).is_integer() and 1 <= v <= 32, "whole bits in 1..32"),
            "quants": (lambda v: float(v).is_integer() and 2 <= v <= 32, "whole bits in 2..32 (sign + magnitude)"),
            "channel": (lambda v: 0.0 < v <= 1.0, "a width in (0, 1]"),
        }
        if self.kind in checks:
            valid, wanted = checks[self.kind]
            bad = {tier: level for tier, level in self.levels.items() if not (math.isfinite(level) and valid(level))}
            if bad:
                raise ValueError(f"{self.kind} levels must be {wanted}; got {bad}")
        return self

    @property
    def compresses(self) -> bool:
        return self.kind in _COMPRESSIONS


class FairnessConfig(StrictModel):
    """A tier-fairness mitigation next to the optimization. ``ceag``: Lagrangian constraints
    ψ_t ≤ ε on each tier's excess accuracy gap against a reference model trained without the
    optimization (CEAG, Hashemizadeh et al. 2023; ``cluster/fairness/ceag.py``). The reference's
    per-tier train accuracy comes from ``reference_run`` (an fl_sim run folder: its summary.json
    final_train) or ``reference_accuracy`` (tier → accuracy)."""

    kind: Literal["none", "ceag"] = "none"
    epsilon: NonNegativeFloat = Field(0.01, description="tolerated excess accuracy gap ε")
    dual_lr: PositiveFloat = Field(2.0, description="η_λ of the projected dual ascent step, once per round")
    buffer_size: PositiveInt = Field(
        2000, description="per-sample correctness values kept per tier (the paper's 40 is per minibatch sample; "
                          "a federated round brings thousands per tier)")
    reference_run: Optional[Location] = Field(None, description="an fl_sim run folder: a local path or storage URI")
    reference_accuracy: Optional[dict[str, float]] = None

    @field_validator("reference_accuracy")
    @classmethod
    def _accuracies(cls, value: Optional[dict[str, float]]) -> Optional[dict[str, float]]:
        bad = {tier: v for tier, v in (value or {}).items() if not (math.isfinite(v) and 0.0 <= v <= 1.0)}
        if bad:
            raise ValueError(f"reference accuracies are shares in [0, 1]; got {bad}")
        return value

    @model_validator(mode="after")
    def _reference(self) -> "FairnessConfig":
        if self.kind == "ceag" and (self.reference_run is None) == (self.reference_accuracy is None):
            raise ValueError("fairness kind 'ceag' needs exactly one of reference_run or reference_accuracy "
                             "(the unoptimized model's per-tier train accuracy)")
        return self


_CALI3F_FIELDS = ("n_clusters", "metadata", "phi", "cluster_lr", "discount", "recluster_every", "recluster_iterations")


class StrategyConfig(StrictModel):
    """How the server turns uploads into models (the bare name is the whole value:
    ``fl.strategy=cali3f``). ``fedavg``: one global model. ``cali3f`` (Zhu et al. 2022;
    ``cluster/fl/cali3f.py``): client clusters with personalised non-embedding parts, FastAgg and
    re-clustering. ``ditto`` (Li et al. 2021; ``cluster/fl/ditto.py``): a personal model per
    client held near the global one. Cali3F and Ditto are for NCF models."""

    kind: Literal["fedavg", "cali3f", "ditto"] = "fedavg"
    n_clusters: PositiveInt = Field(5, description="Cali3F's P")
    metadata: list[str] = Field(["age", "gender", "occupation"],
                                description="privacy-neutral user columns ClusSamp clusters on at the start")
    phi: NonNegativeFloat = Field(1.0, description="CaliUp's φ: pull of the global model on a cluster model (0: none)")
    cluster_lr: Optional[PositiveFloat] = Field(None, description="CaliUp's η; default fl.client_lr, so φ = 0 is "
                                                                  "FedAvg within the cluster at server lr 1")
    discount: float = Field(0.5, ge=0.0, le=1.0, description="eq. 4's λ: share of its delegates' mean update a "
                                                             "subordinate's user vector takes")
    recluster_every: int = Field(1, ge=0, description="rounds between K-means on the user vectors (0: never)")
    recluster_iterations: PositiveInt = Field(5, description="Lloyd steps per re-clustering")
    ditto_lambda: NonNegativeFloat = Field(0.1, description="Ditto's λ: pull of the global model on a personal one")

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value):
        return {"kind": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> "StrategyConfig":
        # Compared with the defaults, not with the fields set: a run's resolved config.yaml spells every field.
        changed = {f for f, info in type(self).model_fields.items() if getattr(self, f) != info.default}
        misplaced = sorted(f for f in changed if
                           (f in _CALI3F_FIELDS and self.kind != "cali3f") or (f == "ditto_lambda" and self.kind != "ditto"))
        if misplaced:
            raise ValueError(f"{misplaced} do not apply to strategy {self.kind!r}")
        if not self.metadata:
            raise ValueError("cali3f needs at least one metadata column to cluster on")
        return self


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
    optimization: OptimizationConfig = OptimizationConfig()
    fairness: FairnessConfig = FairnessConfig()
    strategy: StrategyConfig = StrategyConfig()
    deadline_s: Optional[PositiveFloat] = None
    workers_per_tier: PositiveInt = 1
    worker_num_cpus: NonNegativeFloat = Field(
        0.0, description="CPUs Ray reserves per worker actor; 0 lets many single-threaded workers share 2 cores"
    )
    worker_max_restarts: int = Field(3, ge=0)
    aggregator_max_restarts: int = Field(
        3, ge=0, description="times Ray brings a killed aggregator back to continue from its last checkpoint")
    eval_every: PositiveInt = 1
    checkpoint_every: PositiveInt = 5
    round_timeout_s: PositiveFloat = Field(300.0, description="wall-clock wait for workers before a round gives up on them")
    real_time_scale: NonNegativeFloat = Field(
        0.0, description="demo mode: workers sleep simulated latency x this factor (0 = off)"
    )

    @model_validator(mode="after")
    def _one_overselect(self) -> "FLConfig":
        if self.optimization.kind == "overselect" and self.overselect > 0:
            raise ValueError("set over-selection once: fl.overselect or fl.optimization (kind overselect), not both")
        return self

    @property
    def effective_overselect(self) -> float:
        return self.optimization.overselect if self.optimization.kind == "overselect" else self.overselect


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
    run_dir: Optional[Location] = Field(
        None, description="an fl_sim run folder (GMF), a local path or storage URI; none: train one first")
    synthetic: SyntheticEmbeddingsConfig = SyntheticEmbeddingsConfig()
    group_by: Literal["genre", "popularity", "column"] = "genre"
    group_column: Optional[str] = None
    popularity_buckets: int = Field(5, ge=2)
    k: PositiveInt = 10
    max_k: PositiveInt = 100
    n_shards: PositiveInt = 2
    shard_num_cpus: NonNegativeFloat = Field(
        0.0, description="CPUs Ray reserves per shard actor; > 0 places shards on nodes with CPUs to give")
    index: Literal["flat", "ivf", "ivf_rq", "hnsw"] = Field(
        "flat", description="each shard's FAISS index: flat (exact), or an approximate one whose candidates are "
                            "re-scored exactly by s - mu: ivf (float lists), ivf_rq (residual-quantized lists), hnsw (graph)")
    ivf_nlist: PositiveInt = Field(64, description="ivf, ivf_rq: inverted lists per shard (at most its item count)")
    ivf_nprobe: PositiveInt = Field(8, description="ivf, ivf_rq: lists scanned per query, at most ivf_nlist")
    ivf_overfetch: PositiveInt = Field(
        4, description="ivf, ivf_rq: ivf_overfetch x K candidates fetched by relevance, then re-scored exactly with mu")
    rq_m: int = Field(64, ge=2, le=256, description="ivf_rq: 4-bit residual codebooks per item (FAISS fast scan), "
                                                    "so rq_m / 2 bytes of code; more codebooks, better candidates")
    rq_train_size: PositiveInt = Field(
        65_536, description="ivf_rq: vectors sampled per shard to train the lists and codebooks (the build's cost)")
    hnsw_m: int = Field(32, ge=2, le=256, description="hnsw: graph links per item (2x on the bottom layer)")
    hnsw_ef_construction: PositiveInt = Field(80, description="hnsw: search beam while the graph is built")
    hnsw_ef_search: PositiveInt = Field(
        256, description="hnsw: search beam per query; the whole beam is re-scored exactly with mu")
    hnsw_overfetch: PositiveInt = Field(
        1, description="hnsw: at least hnsw_overfetch x K candidates re-scored (the beam widens to that when larger)")
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
        if self.index in ("ivf", "ivf_rq") and self.ivf_nprobe > self.ivf_nlist:
            raise ValueError(f"ivf_nprobe={self.ivf_nprobe} exceeds ivf_nlist={self.ivf_nlist}: "
                             f"a query cannot scan more lists than the index has")
        if self.index == "ivf_rq" and self.rq_train_size < self.ivf_nlist:
            raise ValueError(f"rq_train_size={self.rq_train_size} is below ivf_nlist={self.ivf_nlist}: "
                             f"training needs at least one vector per list")
        return self

    def shard_index_settings(self) -> dict:
        """ShardIndex's keyword arguments for this section's index kind."""
        return {"kind": self.index, "nlist": self.ivf_nlist, "nprobe": self.ivf_nprobe,
                "overfetch": self.hnsw_overfetch if self.index == "hnsw" else self.ivf_overfetch,
                "rq_m": self.rq_m, "train_size": self.rq_train_size, "hnsw_m": self.hnsw_m,
                "ef_construction": self.hnsw_ef_construction, "ef_search": self.hnsw_ef_search}


class ServeConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)


# --------------------------------------------------------------------------- root
class SimConfig(StrictModel):
    name: str = "fairfleet"
    seed: int = Field(0, ge=0)
    storage: Location = Field("runs", description="where every file a job writes or reads at run time lives: a local "
                         "path (NFS included) or a URI (file://, s3://bucket/prefix?endpoint_override=..., gs://)")
    data: DataConfig = DataConfig()
    tiers: TiersConfig = TiersConfig()
    tier_mapping: TierMappingConfig = TierMappingConfig()
    model: ModelConfig = ModelConfig()
    fl: FLConfig = FLConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    serve: ServeConfig = ServeConfig()

    @model_validator(mode="after")
    def _optimization_fits(self) -> "SimConfig":
        opt = self.fl.optimization
        names = [p.name for p in self.tiers.profiles]
        unknown = sorted((set(opt.levels) | set(opt.excluded_tiers)) - set(names))
        if unknown:
            raise ValueError(f"fl.optimization names tiers {unknown} that tiers.profiles lacks (tiers: {names})")
        if set(opt.excluded_tiers) >= set(names):
            raise ValueError("fl.optimization excludes every tier: no client could train")
        fairness = self.fl.fairness
        if fairness.kind != "none" and not self.model.is_click:
            raise ValueError(f"fl.fairness kind {fairness.kind!r} needs a click model (dlrm, din): it constrains "
                             f"per-sample accuracy, which leave-one-out ranking has no form of")
        if fairness.reference_accuracy is not None and set(fairness.reference_accuracy) != set(names):
            raise ValueError(f"fl.fairness.reference_accuracy must name every tier {names}, "
                             f"got {sorted(fairness.reference_accuracy)}")
        if opt.kind == "channel" and not self.model.is_click:
            raise ValueError(f"fl.optimization kind 'channel' needs a click model (dlrm, din), not {self.model.kind!r}: "
                             f"NCF models have no narrower (HeteroFL) variants here")
        strategy = self.fl.strategy.kind
        if strategy != "fedavg" and self.model.is_click:
            raise ValueError(f"fl.strategy {strategy!r} needs an NCF model (gmf, mlp, neumf): it personalises the "
                             f"split into user, item and dense parts, which {self.model.kind!r} lacks")
        return self
