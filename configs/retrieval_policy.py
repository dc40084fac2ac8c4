"""The exposure policy that sets the retriever's per-group score offsets μ: a tagged union, each
kind with only its own settings (``retrieval.policy=topk`` or ``retrieval.policy.lr=0.5``)."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BeforeValidator, Field, PositiveFloat, PositiveInt

from configs.base import StrictModel


def _bare_kind(value):
    """``retrieval.policy=topk`` stands for ``{kind: topk}``."""
    return {"kind": value} if isinstance(value, str) else value


class FairSyncPolicy(StrictModel):
    """FairSync's dual vector: μ follows a projected (or full) dual step every ``batch_size`` requests."""

    kind: Literal["fairsync"] = "fairsync"
    batch_size: PositiveInt = Field(32, description="B: requests served with one μ before the dual step")
    lr: PositiveFloat = Field(0.01, description="the dual step size")
    optimizer: Literal["adam", "sgd"] = Field(
        "adam", description="how μ steps on its subgradient (torch's Adam or SGD)"
    )
    variant: Literal["projected", "full"] = Field(
        "projected",
        description="projected: λ = −μ ≥ 0, exposure is only a lower bound, so a group above its minimum "
        "is never pushed below what relevance gives it; full: the paper's unprojected dual with "
        "the total-exposure term on argmax μ",
    )


class TopKPolicy(StrictModel):
    """Plain top-K by relevance: μ stays 0 (the unfair reference)."""

    kind: Literal["topk"] = "topk"


class KNeighborPolicy(StrictModel):
    """FairDiverse's k-neighbor re-ranker: a request may only take items of the ``groups`` groups
    with the least exposure so far; the others are masked."""

    kind: Literal["k_neighbor"] = "k_neighbor"
    groups: PositiveInt = Field(1, description="groups masked at a time (at most the number of groups)")


class MinRegularizerPolicy(StrictModel):
    """P-MMF's min-regularizer: a group is penalised by ``strength`` × how far its exposure is
    ahead of the least-exposed group's."""

    kind: Literal["min_regularizer"] = "min_regularizer"
    strength: PositiveFloat = Field(1.0, description="the regulariser's λ")


PolicyConfig = Annotated[
    Union[FairSyncPolicy, TopKPolicy, KNeighborPolicy, MinRegularizerPolicy],
    Field(discriminator="kind"),
    BeforeValidator(_bare_kind),
]
POLICY_KINDS = ("fairsync", "topk", "k_neighbor", "min_regularizer")

# Policy settings that sat beside ``policy`` before it was a tagged union: (kind, new name).
POLICY_MOVED = {
    "dual_batch_size": ("fairsync", "batch_size"),
    "dual_lr": ("fairsync", "lr"),
    "dual_optimizer": ("fairsync", "optimizer"),
    "dual_variant": ("fairsync", "variant"),
    "k_neighbor_groups": ("k_neighbor", "groups"),
    "min_regularizer_lambda": ("min_regularizer", "strength"),
}


def policy_from_old_layout(section: dict) -> dict:
    """A resolved retrieval section written before ``policy`` was a tagged union: its kind's
    settings move under it, the other kinds' go."""
    kind = section["policy"]
    policy = {"kind": kind, **{new: section[old] for old, (owner, new) in POLICY_MOVED.items() if owner == kind}}
    return {**{k: v for k, v in section.items() if k not in POLICY_MOVED}, "policy": policy}


def policy_moves_named(keys: list[str]) -> str:
    return "policy settings now sit under retrieval.policy with its kind: " + ", ".join(
        f"retrieval.{key} → retrieval.policy.{POLICY_MOVED[key][1]} (kind {POLICY_MOVED[key][0]})" for key in keys
    )
