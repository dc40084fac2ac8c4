"""The fair retriever's section: where vectors come from, how items are grouped, the exposure
targets, the policy that sets the per-group score offsets, and each shard's index."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BeforeValidator, Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from configs.base import Location, StrictModel
from configs.retrieval_policy import (
    FairSyncPolicy,
    PolicyConfig,
    POLICY_MOVED,
    policy_from_old_layout,
    policy_moves_named,
)


class SyntheticEmbeddingsConfig(StrictModel):
    """Item and user vectors drawn directly (no training), for scale and for skewed cases."""

    n_items: PositiveInt = Field(20_000, description="items in the catalogue")
    n_users: PositiveInt = Field(2_000, description="users; each is one request of the stream")
    dim: PositiveInt = Field(32, description="length of every item and user vector")
    n_groups: PositiveInt = Field(8, description="item groups, each around its own centroid")
    group_spread: PositiveFloat = Field(
        1.0, description="scale of the group centroids against each item's own noise: larger, groups further apart"
    )
    disliked_group: Optional[int] = Field(None, ge=0, description="a group every user scores low")
    dislike_strength: PositiveFloat = Field(
        2.0, description="the disliked group's score penalty, in standard deviations of the user-item scores"
    )
    query_noise: NonNegativeFloat = Field(
        0.5, description="std of the noise added to a user's true vector to make the query the retriever sees"
    )
    heldout_temperature: PositiveFloat = Field(
        0.5, description="τ of the softmax(⟨u, e⟩ / τ) over a user's 200 best items that draws its held-out item"
    )

    @model_validator(mode="after")
    def _disliked_exists(self) -> "SyntheticEmbeddingsConfig":
        if self.disliked_group is not None and self.disliked_group >= self.n_groups:
            raise ValueError(f"disliked_group={self.disliked_group} but there are only {self.n_groups} groups")
        return self


def _bare_kind(value):
    """``retrieval.index=ivf`` stands for ``{kind: ivf}``."""
    return {"kind": value} if isinstance(value, str) else value


FetchBy = Literal["relevance", "adjusted"]
IVFFetchBy = Literal["per_group", "relevance", "adjusted"]
_FETCH_BY = Field(
    description="fetch candidates by s - mu through per-group columns in the index (exact inner "
    "product; keeps recall when mu is large), or by relevance alone "
    "(cluster/retrieval/shard_index.py)"
)
_IVF_FETCH_BY = Field(
    description="per_group: each group's items clustered into lists of their own, lists probed "
    "and candidates ranked by s - mu (recall holds at any mu); adjusted: FAISS's "
    "lists over per-group columns, probed by s - mu (loses recall at small mu); "
    "relevance: by s alone (loses recall as mu lifts a low-scoring group) "
    "(cluster/retrieval/shard_index.py)"
)


class FlatIndex(StrictModel):
    """Exact inner-product search (IndexFlatIP)."""

    kind: Literal["flat"] = "flat"

    def shard_index_settings(self) -> dict:
        return {"kind": self.kind}


class _InvertedLists(StrictModel):
    """What the IVF kinds share. A base of its own, so each kind's ``kind`` narrows the base's
    (a Literal["ivf_rq"] cannot override IVFIndex's Literal["ivf"])."""

    kind: Literal["ivf", "ivf_rq"]
    nlist: PositiveInt = Field(64, description="inverted lists per shard (at most its item count)")
    nprobe: PositiveInt = Field(8, description="lists scanned per query, at most nlist")
    overfetch: PositiveInt = Field(4, description="overfetch x K candidates fetched, then re-scored exactly with mu")
    fetch_by: IVFFetchBy = Field("per_group", description=_IVF_FETCH_BY.description)

    @model_validator(mode="after")
    def _probes_fit(self):
        if self.nprobe > self.nlist:
            raise ValueError(
                f"nprobe={self.nprobe} exceeds nlist={self.nlist}: a query cannot scan more lists than the index has"
            )
        return self

    def shard_index_settings(self) -> dict:
        return {
            "kind": self.kind,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "overfetch": self.overfetch,
            "fetch_by": self.fetch_by,
        }


class IVFIndex(_InvertedLists):
    """Inverted lists of float vectors; candidates re-scored exactly by s - mu."""

    kind: Literal["ivf"] = "ivf"


class IVFRQIndex(_InvertedLists):
    """Inverted lists of residual-quantized codes (FAISS fast scan): the hierarchical index."""

    kind: Literal["ivf_rq"] = "ivf_rq"
    rq_m: int = Field(
        64,
        ge=2,
        le=256,
        description="4-bit residual codebooks per item, so rq_m / 2 bytes of code; more codebooks, better candidates",
    )
    train_size: PositiveInt = Field(
        65_536, description="vectors sampled per shard to train the lists and codebooks (the build's cost)"
    )

    @model_validator(mode="after")
    def _enough_to_train(self):
        if self.train_size < self.nlist:
            raise ValueError(
                f"train_size={self.train_size} is below nlist={self.nlist}: training needs at least one vector per list"
            )
        return self

    def shard_index_settings(self) -> dict:
        return {**super().shard_index_settings(), "rq_m": self.rq_m, "train_size": self.train_size}


class HNSWIndex(StrictModel):
    """A navigable small-world graph; the whole search beam is re-scored exactly by s - mu."""

    kind: Literal["hnsw"] = "hnsw"
    m: int = Field(32, ge=2, le=256, description="graph links per item (2x on the bottom layer)")
    ef_construction: PositiveInt = Field(80, description="search beam while the graph is built")
    ef_search: PositiveInt = Field(256, description="search beam per query")
    overfetch: PositiveInt = Field(
        1, description="at least overfetch x K candidates re-scored (the beam widens to that when larger)"
    )
    # Relevance: on a small catalogue the graph over the group columns lost recall (docs/results/index-kinds.md).
    fetch_by: FetchBy = Field("relevance", description=_FETCH_BY.description)

    def shard_index_settings(self) -> dict:
        return {
            "kind": self.kind,
            "hnsw_m": self.m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "overfetch": self.overfetch,
            "fetch_by": self.fetch_by,
        }


# Each shard's FAISS index; the bare kind is the whole value (``retrieval.index=ivf``).
IndexConfig = Annotated[
    Union[FlatIndex, IVFIndex, IVFRQIndex, HNSWIndex], Field(discriminator="kind"), BeforeValidator(_bare_kind)
]
INDEX_KINDS = ("flat", "ivf", "ivf_rq", "hnsw")
# Index settings that sat beside ``index`` before it was a tagged union, and where they went.
_MOVED = {
    "ivf_nlist": "nlist",
    "ivf_nprobe": "nprobe",
    "ivf_overfetch": "overfetch",
    "rq_m": "rq_m",
    "rq_train_size": "train_size",
    "hnsw_m": "m",
    "hnsw_ef_construction": "ef_construction",
    "hnsw_ef_search": "ef_search",
    "hnsw_overfetch": "overfetch",
    "fetch_by": "fetch_by",
}


def _from_old_layout(section: dict) -> dict:
    """A resolved retrieval section written before ``index`` was a tagged union: its kind's
    settings move under it (hnsw's own over-fetch, the IVF kinds' theirs), the others go."""
    kind = section["index"]
    own = {
        "flat": (),
        "ivf": ("ivf_nlist", "ivf_nprobe", "ivf_overfetch", "fetch_by"),
        "ivf_rq": ("ivf_nlist", "ivf_nprobe", "ivf_overfetch", "rq_m", "rq_train_size", "fetch_by"),
        "hnsw": ("hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "hnsw_overfetch", "fetch_by"),
    }.get(kind, ())
    index = {"kind": kind, **{_MOVED[key]: section[key] for key in own if section[key] is not None}}
    return {**{k: v for k, v in section.items() if k not in _MOVED}, "index": index}


def _index_moves_named(keys: list[str]) -> str:
    return "index settings now sit under retrieval.index with its kind: " + ", ".join(
        f"retrieval.{key} → retrieval.index.{_MOVED[key]}" for key in keys
    )


class RetrievalConfig(StrictModel):
    """The fair retriever (FairSync): where vectors come from, how items are grouped, the
    exposure targets, the policy that sets the per-group score offsets, and the index layout."""

    source: Literal["run", "synthetic"] = Field(
        "run",
        description="run: vectors of a trained GMF fl_sim run (run_dir); synthetic: vectors drawn by "
        "retrieval.synthetic",
    )
    run_dir: Optional[Location] = Field(
        None, description="an fl_sim run folder (GMF), a local path or storage URI; none: train one first"
    )
    synthetic: SyntheticEmbeddingsConfig = Field(
        SyntheticEmbeddingsConfig(), description="the drawn vectors, for source synthetic"
    )
    group_by: Literal["genre", "popularity", "column"] = Field(
        "genre",
        description="source run: how items are grouped: genre (the item file's group column: an item's "
        "first listed genre, or its synthetic group), popularity (buckets by training "
        "interactions) or column (group_column)",
    )
    group_column: Optional[str] = Field(None, description="group_by column: the item file's column to group by")
    popularity_buckets: int = Field(5, ge=2, description="group_by popularity: equal-size buckets, least popular first")
    k: PositiveInt = Field(
        10, description="K: items per request in the evaluation, and the slots per request the exposure targets count"
    )
    max_k: PositiveInt = Field(100, description="the largest k a served request may ask for")
    n_shards: PositiveInt = Field(
        2,
        description="partitions the items are split over at random, each with its own index (and, with "
        "search_in shard_actors, its own actor)",
    )
    search_in: Literal["replica", "shard_actors"] = Field(
        "replica",
        description="where the partitions are searched: replica (each Serve replica or coordinator loads every "
        "partition from storage and searches them in its own process: no Ray call per batch, the whole catalogue "
        "in each replica's memory) or shard_actors (one actor per partition, for a catalogue larger than a "
        "replica should hold, or shards on other nodes; a shard that is down gives partial answers)",
    )
    shard_num_cpus: NonNegativeFloat = Field(
        0.0, description="CPUs Ray reserves per shard actor; > 0 places shards on nodes with CPUs to give"
    )
    index: IndexConfig = Field(
        FlatIndex(),
        description="each shard's FAISS index: flat (exact), or an approximate one whose candidates are "
        "re-scored exactly by s - mu: ivf (float lists), ivf_rq (residual-quantized lists), "
        "hnsw (graph)",
    )
    policy: PolicyConfig = Field(
        FairSyncPolicy(),
        description="what sets the per-group offsets mu: fairsync (the dual vector), or a baseline: "
        "topk (mu = 0), k_neighbor, min_regularizer",
    )
    exposure_share: float = Field(
        0.2, ge=0.0, le=1.0, description="m_g = share x T*K/G: the fraction of an equal split each group is owed"
    )
    horizon: Optional[PositiveInt] = Field(None, description="T; default: the number of evaluation requests")

    @model_validator(mode="before")
    @classmethod
    def _settings_moved(cls, value):
        """Index and policy settings that sat beside ``index`` / ``policy`` before each was a
        tagged union are refused naming where they went; a run folder's config from before the
        split (all of them present) is converted, so the run resumes."""
        for keys, section, convert, named in (
            (_MOVED, "index", _from_old_layout, _index_moves_named),
            (POLICY_MOVED, "policy", policy_from_old_layout, policy_moves_named),
        ):
            moved = sorted(key for key in keys if isinstance(value, dict) and key in value)
            if len(moved) == len(keys) and isinstance(value.get(section), str):
                value = convert(value)
            elif moved:
                raise ValueError(named(moved))
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "RetrievalConfig":
        if self.k > self.max_k:
            raise ValueError(f"k={self.k} exceeds max_k={self.max_k}")
        if self.group_by == "column" and not self.group_column:
            raise ValueError("group_by=column needs group_column (the item Parquet column to group by)")
        return self

    def shard_index_settings(self) -> dict:
        """ShardIndex's keyword arguments for this section's index kind."""
        return self.index.shard_index_settings()
