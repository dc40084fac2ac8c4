"""The federated-learning section: the round recipe, the tier-aware optimization, the fairness
mitigation and the strategy (each a tagged union: a kind carries only its own fields), and where
the actors run (``runtime``), which never changes a result."""

from __future__ import annotations

import math
from typing import Annotated, Literal, Optional, Union, get_args

from pydantic import (
    BeforeValidator,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from configs.base import Location, StrictModel
from configs.availability_schema import AVAILABILITY_KINDS, AlwaysAvailable, AvailabilityConfig
from configs.mode_schema import MODE_KINDS, ModeConfig, SyncMode
from configs.privacy_schema import (
    PRIVACY_KINDS,
    SECURE_AGGREGATION_KINDS,
    NoPrivacy,
    NoSecureAggregation,
    PrivacyConfig,
    SecureAggregation,
)
from configs.server_optimizer_schema import SERVER_OPTIMIZERS, SGDServer, ServerOptimizerConfig
from configs.retrieval_schema import INDEX_KINDS
from configs.retrieval_policy import POLICY_KINDS


def _bare_kind(value):
    """``fl.strategy=cali3f`` stands for ``{kind: cali3f}``."""
    return {"kind": value} if isinstance(value, str) else value


class _Optimization(StrictModel):
    """A tier-aware speed-up (RF² Table 1). Give ``preset`` (a name from
    ``configs.presets.OPTIMIZATION_PRESETS``, or the bare name as the whole value:
    ``fl.optimization=prune-1:4:16``), or ``kind`` with its own settings. ``levels`` maps a tier
    name to its level; a tier left out is not optimized."""

    preset: Optional[str] = Field(
        None,
        description="a preset's name (configs/presets.py): it sets kind and that "
        "kind's settings; the name alone may be the whole value",
    )


class NoOptimization(_Optimization):
    kind: Literal["none"] = "none"


class ExcludeOptimization(_Optimization):
    """Exclude Lo: the named tiers never train."""

    kind: Literal["exclude"] = "exclude"
    excluded_tiers: list[str] = Field(min_length=1, description="tiers whose clients are never selected")


class OverselectOptimization(_Optimization):
    kind: Literal["overselect"] = "overselect"
    overselect: NonNegativeFloat = Field(0.2, description="x in (1+x)·n selected, the slowest dropped")


def _levels_check(valid, wanted: str):
    """A ``levels`` validator: every tier's level passes ``valid``, or the message says ``wanted``."""

    def check(cls, levels: dict[str, float]) -> dict[str, float]:
        bad = {tier: level for tier, level in levels.items() if not (math.isfinite(level) and valid(level))}
        if bad:
            raise ValueError(f"{cls.model_fields['kind'].default} levels must be {wanted}; got {bad}")
        return levels

    return field_validator("levels")(classmethod(check))


class PruneOptimization(_Optimization):
    kind: Literal["prune"] = "prune"
    levels: dict[str, float] = Field(default_factory=dict, description="tier → pruned share of its update")
    rescale_pruned: bool = Field(False, description="scale kept entries by 1/(1-rate) (unbiased); RF² does not")
    _levels = _levels_check(lambda v: 0.0 <= v < 1.0, "a pruned share in [0, 1)")


class QuantOptimization(_Optimization):
    kind: Literal["quant"] = "quant"
    levels: dict[str, float] = Field(default_factory=dict, description="tier → bits per uploaded entry (32: exact)")
    _levels = _levels_check(lambda v: float(v).is_integer() and 1 <= v <= 32, "whole bits in 1..32")


class QuantSOptimization(_Optimization):
    """QuantS: sign + magnitude bits, so a zero stays exactly zero."""

    kind: Literal["quants"] = "quants"
    levels: dict[str, float] = Field(default_factory=dict, description="tier → bits, sign included")
    _levels = _levels_check(lambda v: float(v).is_integer() and 2 <= v <= 32, "whole bits in 2..32 (sign + magnitude)")


class ChannelOptimization(_Optimization):
    kind: Literal["channel"] = "channel"
    levels: dict[str, float] = Field(default_factory=dict, description="tier → kept width of the narrowed layers")
    _levels = _levels_check(lambda v: 0.0 < v <= 1.0, "a width in (0, 1]")


class SubsampleOptimization(_Optimization):
    kind: Literal["subsample"] = "subsample"
    levels: dict[str, float] = Field(default_factory=dict, description="tier → share of local samples trained")
    _levels = _levels_check(lambda v: 0.0 < v <= 1.0, "a share of local samples in (0, 1]")


# Spelled out as a Union (not built from a tuple) so type checkers see the members and narrow on ``kind``.
_AnyOptimization = Union[
    NoOptimization,
    ExcludeOptimization,
    OverselectOptimization,
    PruneOptimization,
    QuantOptimization,
    QuantSOptimization,
    ChannelOptimization,
    SubsampleOptimization,
]
_OPTIMIZATIONS: tuple[type[_Optimization], ...] = get_args(_AnyOptimization)
# What a resolved config written before the optimizations were a tagged union repeats for every
# kind; where all four appear (such a file), those still at these defaults are dropped, so old
# run folders load and resume.
_SHARED_BEFORE = {"levels": {}, "excluded_tiers": [], "overselect": 0.2, "rescale_pruned": False}


def _expand_optimization(value):
    """A bare name or ``{preset: name, ...}`` becomes the preset's kind and settings; a section
    without a kind is kind 'none'."""
    from configs.presets import OPTIMIZATION_PRESETS

    if isinstance(value, str):
        value = {"preset": value}
    if not isinstance(value, dict):
        return value
    if value.get("preset") is not None:
        name = value["preset"]
        if name not in OPTIMIZATION_PRESETS:
            raise ValueError(f"unknown preset {name!r}; known: {', '.join(OPTIMIZATION_PRESETS)}")
        preset = OPTIMIZATION_PRESETS[name]
        # A resolved config written by a run repeats the preset's own values: those agree.
        clashing = sorted(k for k in value if k in preset and value[k] != preset[k])
        if clashing:
            raise ValueError(f"preset {name!r} sets {clashing} itself; drop them or drop the preset")
        value = {**value, **preset}
    value = {"kind": "none", **value}
    member = {m.model_fields["kind"].default: m for m in _OPTIMIZATIONS}.get(value["kind"])
    if member is not None and set(_SHARED_BEFORE) <= set(value):  # an old run's resolved config
        value = {
            k: v
            for k, v in value.items()
            if k in member.model_fields or k not in _SHARED_BEFORE or v != _SHARED_BEFORE[k]
        }
    return value


# RF²'s tier-aware speed-ups, each kind with only its own settings.
OptimizationConfig = Annotated[_AnyOptimization, Field(discriminator="kind"), BeforeValidator(_expand_optimization)]


def optimization(value) -> "_Optimization":
    """An ``fl.optimization`` value (a preset name or a mapping) validated on its own."""
    from pydantic import TypeAdapter

    return TypeAdapter(OptimizationConfig).validate_python(value)


def levels_of(opt: "_Optimization") -> dict[str, float]:
    """The per-tier levels of a kind that has them; {} for the others."""
    return dict(getattr(opt, "levels", {}))


# --------------------------------------------------------------------------- fairness
class NoFairness(StrictModel):
    kind: Literal["none"] = "none"


class CEAGConfig(StrictModel):
    """Lagrangian constraints ψ_t ≤ ε on each tier's excess accuracy gap against a reference
    model trained without the optimization (CEAG, Hashemizadeh et al. 2023;
    ``cluster/fairness/ceag.py``). The reference's per-tier train accuracy comes from
    ``reference_run`` (an fl_sim run folder: its summary.json final_train) or
    ``reference_accuracy`` (tier → accuracy)."""

    kind: Literal["ceag"] = "ceag"
    measure: Literal["accuracy", "pairwise"] = Field(
        "accuracy",
        description="what ψ bounds: per-sample accuracy at p >= 1/2, or the pairwise ranking quality "
        "inside each client's samples (cluster/fairness/ranking.py), the form of AUC",
    )
    proxy: Literal["loss", "pairwise_logistic"] = Field(
        "loss",
        description="the primal step's differentiable stand-in for ψ: the tiers' BCE loss gap, applied by "
        "re-weighting FedAvg; or, with measure 'pairwise', the gap in the pairwise logistic loss "
        "over each client's (click, non-click) pairs, whose gradients clients upload beside their "
        "update (one more upload of the same rows)",
    )
    epsilon: NonNegativeFloat = Field(0.01, description="tolerated excess accuracy gap ε")
    dual_lr: PositiveFloat = Field(2.0, description="η_λ of the projected dual ascent step, once per round")
    buffer_size: PositiveInt = Field(
        2000,
        description="per-sample correctness values kept per tier (the paper's 40 is per minibatch sample; "
        "a federated round brings thousands per tier)",
    )
    reference_run: Optional[Location] = Field(None, description="an fl_sim run folder: a local path or storage URI")
    reference_accuracy: Optional[dict[str, float]] = Field(
        None, description="tier → the reference model's train accuracy, every tier named; instead of reference_run"
    )

    @field_validator("reference_accuracy")
    @classmethod
    def _accuracies(cls, value: Optional[dict[str, float]]) -> Optional[dict[str, float]]:
        bad = {tier: v for tier, v in (value or {}).items() if not (math.isfinite(v) and 0.0 <= v <= 1.0)}
        if bad:
            raise ValueError(f"reference accuracies are shares in [0, 1]; got {bad}")
        return value

    @model_validator(mode="after")
    def _proxy_matches_measure(self) -> "CEAGConfig":
        if self.proxy == "pairwise_logistic" and self.measure != "pairwise":
            raise ValueError(
                "fl.fairness.proxy 'pairwise_logistic' is the differentiable form of measure 'pairwise'; "
                f"with measure {self.measure!r} use proxy 'loss'"
            )
        return self

    @model_validator(mode="after")
    def _reference(self) -> "CEAGConfig":
        if (self.reference_run is None) == (self.reference_accuracy is None):
            raise ValueError(
                "fairness kind 'ceag' needs exactly one of reference_run or reference_accuracy "
                "(the unoptimized model's per-tier train accuracy)"
            )
        return self


# A tier-fairness mitigation next to the optimization.
FairnessConfig = Annotated[Union[NoFairness, CEAGConfig], Field(discriminator="kind"), BeforeValidator(_bare_kind)]


# --------------------------------------------------------------------------- strategy
class FedAvgConfig(StrictModel):
    """One global model, the sample-weighted mean of the kept clients' updates."""

    kind: Literal["fedavg"] = "fedavg"

    def summary(self) -> str:
        """The strategy in a few words, for a results page's setting line."""
        return self.kind


class FedProxConfig(StrictModel):
    """FedProx (Li et al. 2020): FedAvg's server, and each client's local objective adds
    μ/2·‖w − w_global‖² over the shared model, which keeps many local steps near the global one."""

    kind: Literal["fedprox"] = "fedprox"
    mu: NonNegativeFloat = Field(
        0.001, description="FedProx's μ: the proximal pull toward the received global model (0: FedAvg bit for bit)"
    )

    def summary(self) -> str:
        return f"fedprox (μ {self.mu:g})"


class ScaffoldConfig(StrictModel):
    """SCAFFOLD (Karimireddy et al. 2020): server and client control variates of the dense part
    correct each local step for the client's drift; the server step is FedAvg's."""

    kind: Literal["scaffold"] = "scaffold"

    def summary(self) -> str:
        return self.kind


class DittoConfig(StrictModel):
    """Ditto (Li et al. 2021; ``cluster/fl/strategies/ditto/``): a personal model per client, held
    near the global one."""

    kind: Literal["ditto"] = "ditto"
    ditto_lambda: NonNegativeFloat = Field(0.1, description="Ditto's λ: pull of the global model on a personal one")

    def summary(self) -> str:
        return f"ditto (λ {self.ditto_lambda:g})"


class Cali3FConfig(StrictModel):
    """Cali3F (Zhu et al. 2022; ``cluster/fl/strategies/cali3f/``): client clusters with personalised
    non-embedding parts, FastAgg and re-clustering."""

    kind: Literal["cali3f"] = "cali3f"
    n_clusters: PositiveInt = Field(5, description="Cali3F's P")
    metadata: list[str] = Field(
        ["age", "gender", "occupation"],
        min_length=1,
        description="privacy-neutral user columns ClusSamp clusters on at the start",
    )
    phi: NonNegativeFloat = Field(1.0, description="CaliUp's φ: pull of the global model on a cluster model (0: none)")
    cluster_lr: Optional[PositiveFloat] = Field(
        None, description="CaliUp's η; default fl.client_lr, so φ = 0 is FedAvg within the cluster at server lr 1"
    )
    discount: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="eq. 4's λ: share of its delegates' mean update a subordinate's user vector takes",
    )
    recluster_every: int = Field(1, ge=0, description="rounds between K-means on the user vectors (0: never)")
    recluster_iterations: PositiveInt = Field(5, description="Lloyd steps per re-clustering")

    def summary(self) -> str:
        return self.kind


# How the server turns uploads into models; the bare name is the whole value (``fl.strategy=cali3f``).
StrategyConfig = Annotated[
    Union[FedAvgConfig, FedProxConfig, ScaffoldConfig, DittoConfig, Cali3FConfig],
    Field(discriminator="kind"),
    BeforeValidator(_bare_kind),
]


# --------------------------------------------------------------------------- upload
class TouchedUpload(StrictModel):
    """Only the embedding rows the client's own samples read: the fewest bytes, but the row ids
    tell the server exactly which items the user interacted with (the leak RF² cites when it
    rules out Top-K pruning)."""

    kind: Literal["touched"] = "touched"


class DenseUpload(StrictModel):
    """Every row of every federated embedding table, as RF² simulates: no row ids, but rows the
    client never read travel too, and a compressor that does not keep zeros exact (Quant) turns
    them into noise for everyone else (RF² Takeaways 5-6). Float32 or QuantS zeros still show the
    server which rows were touched."""

    kind: Literal["dense"] = "dense"


class PaddedUpload(StrictModel):
    """The touched rows among decoy rows (after FedRec, Lin et al. 2020): ``pad_ratio`` x as many
    untouched rows per table, fixed per client, carrying zero-mean noise at the scale of the
    client's real rows, so the average stays unbiased. Obfuscation with no privacy guarantee: a
    server that knows the run's seed reads the real rows off the decoy order, and one that compares
    two rounds tells persisting real rows from fresh noise (``tests/unit/test_padded_upload_inference.py``)."""

    kind: Literal["padded"] = "padded"
    pad_ratio: PositiveFloat = Field(1.0, description="decoy rows per touched row, per embedding table")


# What a client uploads of the embedding tables; the bare name is the whole value (``fl.upload=dense``).
UploadConfig = Annotated[
    Union[TouchedUpload, DenseUpload, PaddedUpload], Field(discriminator="kind"), BeforeValidator(_bare_kind)
]


# The tagged unions by field name, and their members' tags: an error inside a member names the
# path without the tag (``fl.strategy.phi``, not ``fl.strategy.fedavg.phi``).
TAGGED_UNIONS = {
    "optimization": {m.model_fields["kind"].default for m in _OPTIMIZATIONS},
    "fairness": {m.model_fields["kind"].default for m in (NoFairness, CEAGConfig)},
    "strategy": {
        m.model_fields["kind"].default for m in (FedAvgConfig, FedProxConfig, ScaffoldConfig, DittoConfig, Cali3FConfig)
    },
    "upload": {m.model_fields["kind"].default for m in (TouchedUpload, DenseUpload, PaddedUpload)},
    "index": set(INDEX_KINDS),  # retrieval.index
    "policy": set(POLICY_KINDS),  # retrieval.policy
    "server_optimizer": {m.model_fields["kind"].default for m in SERVER_OPTIMIZERS},
    "privacy": {m.model_fields["kind"].default for m in PRIVACY_KINDS},
    "secure_aggregation": {m.model_fields["kind"].default for m in SECURE_AGGREGATION_KINDS},
    "mode": {m.model_fields["kind"].default for m in MODE_KINDS},
    "availability": {m.model_fields["kind"].default for m in AVAILABILITY_KINDS},
}


# Sections whose whole value may be a bare name, and the key that name stands for: an override
# that reaches into one (``fl.strategy.n_clusters=3`` after ``fl.strategy=cali3f``) opens it.
BARE_NAME_KEYS = {
    "strategy": "kind",
    "fairness": "kind",
    "optimization": "preset",
    "upload": "kind",
    "index": "kind",
    "policy": "kind",
    "server_optimizer": "kind",
    "privacy": "kind",
    "secure_aggregation": "kind",
    "mode": "kind",
    "availability": "kind",
}


# --------------------------------------------------------------------------- runtime
class FLRuntimeConfig(StrictModel):
    """Where and how the actors run. None of it changes a result (tested: same results with one
    or three workers per tier), so it is left out of the config hash."""

    workers_per_tier: PositiveInt = Field(
        1, description="worker actors per tier, each holding a share of the tier's clients"
    )
    worker_num_cpus: NonNegativeFloat = Field(
        0.0, description="CPUs Ray reserves per worker actor; 0 lets many single-threaded workers share 2 cores"
    )
    worker_max_restarts: int = Field(3, ge=0, description="times Ray restarts a killed worker actor")
    aggregator_max_restarts: int = Field(
        3, ge=0, description="times Ray brings a killed aggregator back to continue from its last checkpoint"
    )
    round_timeout_s: PositiveFloat = Field(
        300.0, description="wall-clock wait for workers before a round gives up on them"
    )
    real_time_scale: NonNegativeFloat = Field(
        0.0, description="demo mode: workers sleep simulated latency x this factor (0 = off)"
    )


class FLConfig(StrictModel):
    """Defaults are the NCF recipe that learns on ML-100K (docs/concepts/federated-simulation.md,
    "The NCF learning rates"); RF²'s click-model recipe is client_lr 1, both scales 1, AdaGrad server lr 0.1."""

    rounds: PositiveInt = Field(20, description="federated rounds to run (asynchronous mode: server steps)")
    mode: ModeConfig = Field(
        SyncMode(),
        description="sync: rounds of selected clients; async: buffered asynchronous aggregation on the virtual "
        "clock (FedBuff), C devices in flight, a server step every K updates",
    )
    clients_per_round: PositiveInt = Field(
        100,
        description="n: clients whose updates a round keeps; with over-selection (1+x)·n are selected and the "
        "fastest n kept",
    )
    local_epochs: PositiveInt = Field(1, description="passes each client makes over its local samples per round")
    client_lr: PositiveFloat = Field(
        3.0,
        description="client SGD lr of the dense (non-embedding) weights; a click "
        "model trains every tensor at this rate",
    )
    item_lr_scale: PositiveFloat = Field(100.0, description="NCF: client lr multiplier for item embeddings")
    user_lr_scale: PositiveFloat = Field(30.0, description="NCF: client lr multiplier for the private user vector")
    loss_reduction: Literal["mean", "sum"] = Field(
        "mean", description="a client's BCE averaged or summed over its samples"
    )
    negatives_per_positive: PositiveInt = Field(4, description="NCF: sampled negatives a client trains on per positive")
    server_optimizer: ServerOptimizerConfig = Field(
        SGDServer(),
        description="how the server applies the averaged update Δ: sgd (θ += lr·Δ), momentum (FedAvgM), "
        "adagrad, adam or yogi (FedAdagrad, FedAdam, FedYogi: Reddi et al. 2021)",
    )
    server_lr: PositiveFloat = Field(1.0, description="the server optimizer's step size η (sgd at 1: plain FedAvg)")
    overselect: NonNegativeFloat = Field(0.0, description="x in (1+x)·n selected clients")
    availability: AvailabilityConfig = Field(
        AlwaysAvailable(),
        description="when devices can train: always, diurnal windows per tier, or a Parquet trace; only "
        "available devices are drawn, in rounds and in asynchronous mode",
    )
    optimization: OptimizationConfig = Field(
        NoOptimization(),
        description="the tier-aware speed-up (RF² Table 1): a preset's name, or a kind with its settings",
    )
    fairness: FairnessConfig = Field(
        NoFairness(),
        description="the tier-fairness mitigation: none, or CEAG's "
        "per-tier constraints (strategies that serve one global model: fedavg, fedprox, scaffold)",
    )
    strategy: StrategyConfig = Field(
        FedAvgConfig(),
        description="how the server turns uploads into the models it serves: fedavg (one global "
        "model), fedprox (FedAvg with a proximal local term), scaffold (FedAvg with "
        "control variates), ditto (a personal model "
        "per client), cali3f (a model per cluster)",
    )
    privacy: PrivacyConfig = Field(
        NoPrivacy(),
        description="what protects each user's data in the released model: none, central_dp "
        "(clipped updates, Gaussian noise, (ε, δ) from an accountant), distributed_dp (the same, the "
        "noise added by the devices under secure aggregation) or local_dp (each device noises its own update)",
    )
    secure_aggregation: SecureAggregation = Field(
        NoSecureAggregation(),
        description="none, or secagg: the server sees only the sum of a round's masked uploads "
        "(SecAgg; SecAgg+ with neighbours), priced on the virtual clock",
    )
    upload: UploadConfig = Field(
        TouchedUpload(),
        description="which embedding rows a client uploads: touched (only those its samples "
        "read), dense (every row) or padded (the touched rows among decoys: obfuscation, no privacy guarantee)",
    )
    deadline_s: Optional[PositiveFloat] = Field(
        None,
        description="simulated seconds a round waits: a client slower than this is dropped from the round "
        "(none: no deadline)",
    )
    eval_every: PositiveInt = Field(
        1, description="rounds between evaluations on the test rows (the last round is always evaluated)"
    )
    checkpoint_every: PositiveInt = Field(
        5, description="rounds between an fl_sim run's checkpoints, which --resume continues from"
    )
    runtime: FLRuntimeConfig = Field(
        FLRuntimeConfig(), description="where and how the actors run; never changes a result"
    )

    @model_validator(mode="before")
    @classmethod
    def _server_eps_moved(cls, value):
        """``server_eps`` was AdaGrad's τ beside a bare ``server_optimizer`` name: a run folder's
        config written that way is converted, so the run resumes; anything else is refused naming
        where τ went."""
        if isinstance(value, dict) and "server_eps" in value:
            kind = value.get("server_optimizer", "sgd")
            if not isinstance(kind, str):
                raise ValueError("fl.server_eps moved: set fl.server_optimizer.tau (kinds adagrad, adam, yogi)")
            rest = {k: v for k, v in value.items() if k != "server_eps"}
            rest["server_optimizer"] = (
                {"kind": kind, "tau": value["server_eps"]} if kind == "adagrad" else {"kind": kind}
            )
            return rest
        return value

    @model_validator(mode="after")
    def _one_overselect(self) -> "FLConfig":
        if self.optimization.kind == "overselect" and self.overselect > 0:
            raise ValueError("set over-selection once: fl.overselect or fl.optimization (kind overselect), not both")
        return self

    @property
    def effective_overselect(self) -> float:
        return self.optimization.overselect if self.optimization.kind == "overselect" else self.overselect
