"""How the server steps (``fl.mode``): synchronous rounds, or buffered asynchronous aggregation on
the virtual clock (FedBuff, Nguyen et al. 2022)."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BeforeValidator, Field, NonNegativeFloat, PositiveInt

from configs.base import StrictModel


def _bare_kind(value):
    """``fl.mode=async`` stands for ``{kind: async}``."""
    return {"kind": value} if isinstance(value, str) else value


class SyncMode(StrictModel):
    kind: Literal["sync"] = "sync"


class AsyncMode(StrictModel):
    """``concurrency`` devices train at once; one that reports is replaced at once by a newly
    drawn one (a device trains at most once per model version); the server steps each time
    ``buffer_size`` updates are in, each weighted by its sample count times (1 + staleness)^−a,
    staleness being how many server steps happened since the device took its model. One server
    step is one of ``fl.rounds``."""

    kind: Literal["async"] = "async"
    concurrency: Optional[PositiveInt] = Field(
        None, description="C: devices in flight at once (default fl.clients_per_round)"
    )
    buffer_size: Optional[PositiveInt] = Field(
        None, description="K: updates a server step applies (default C / 10, at least 1)"
    )
    staleness_exponent: NonNegativeFloat = Field(
        0.5, description="a in the staleness weight (1 + s)^−a (FedBuff's 1/√(1 + s) at 0.5; 0: no discount)"
    )
    tier_staleness: bool = Field(
        False,
        description="divide each update's staleness discount by its tier's mean discount so far, so a slow "
        "tier's weight follows its number of updates instead of shrinking with its staleness",
    )


ModeConfig = Annotated[Union[SyncMode, AsyncMode], Field(discriminator="kind"), BeforeValidator(_bare_kind)]
MODE_KINDS = (SyncMode, AsyncMode)
