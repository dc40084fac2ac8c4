"""The fair retriever's section: where vectors come from, how items are grouped, the exposure
targets, the policy that sets the per-group score offsets, and each shard's index."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from configs.base import Location, StrictModel


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
    fetch_by: Optional[Literal["relevance", "adjusted"]] = Field(
        None, description="ivf, ivf_rq, hnsw: fetch candidates by s - mu through per-group columns in the index "
                          "(exact inner product; keeps recall when mu is large), or by relevance alone; "
                          "default: adjusted for ivf and ivf_rq, relevance for hnsw (cluster/retrieval/shard_index.py)")
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
                "ef_construction": self.hnsw_ef_construction, "ef_search": self.hnsw_ef_search,
                "fetch_by": self.fetch_by}
