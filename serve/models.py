"""HTTP bodies of the fair retriever (pydantic): a malformed body is a 422 naming the field."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, model_validator


class RetrieveRequest(BaseModel):
    # Strict: "7" is not a user id and true is not a k (JSON numbers still fill the vector's floats).
    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: Optional[int] = Field(None, description="original user id of a known user")
    user_vector: Optional[list[FiniteFloat]] = Field(None, description="a query vector instead of a user id")
    k: int = Field(10, gt=0, description="number of items; at most the server's max_k")

    @model_validator(mode="after")
    def _one_query(self) -> "RetrieveRequest":
        if (self.user_id is None) == (self.user_vector is None):
            raise ValueError("give exactly one of user_id or user_vector")
        return self


class RetrievedItem(BaseModel):
    id: int
    group: str
    score: float
    adjusted_score: float


class RetrieveResponse(BaseModel):
    items: list[RetrievedItem]
    mu_version: int
    partial: bool


class StatsResponse(BaseModel):
    groups: list[str]
    exposure: list[float]
    m: list[float]
    mu: list[float]
    mu_version: int
    requests: int
    esp: float = Field(description="share of groups at or above their pro-rata minimum exposure")
    fill: float = Field(description="share of the owed exposure delivered so far")
    fanouts: int = Field(0, description="shard fan-outs this replica made: one per batch of requests")
    fanout_requests: int = Field(0, description="requests those fan-outs answered (over fanouts: the mean batch)")
    unreported: int = Field(0, description="this replica's served batches the dual-vector actor has not yet counted")
    dropped_requests: int = Field(
        0,
        description="requests this replica served whose report it gave up: its outbox "
        "filled while the dual-vector actor could not be reached",
    )
