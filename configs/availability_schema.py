"""When each device can train (``fl.availability``): always (the default), diurnal windows whose
length depends on the tier, or windows read from a Parquet trace."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BeforeValidator, Field, NonNegativeFloat, PositiveFloat, model_validator

from configs.base import StrictModel


def _bare_kind(value):
    """``fl.availability=diurnal`` stands for ``{kind: diurnal}``."""
    return {"kind": value} if isinstance(value, str) else value


class AlwaysAvailable(StrictModel):
    kind: Literal["always"] = "always"


class DiurnalAvailability(StrictModel):
    """One window a period per device (charging and idle, say), at a phase drawn per device from
    the seed, as long as its tier's ``available_share`` of the period."""

    kind: Literal["diurnal"] = "diurnal"
    period_s: PositiveFloat = Field(86400.0, description="simulated seconds of one period (a day)")
    available_share: dict[str, float] = Field(
        default_factory=lambda: {"low": 0.3, "mid": 0.5, "high": 0.7},
        description="per tier name, the share of each period its devices can train (0 < share ≤ 1)",
    )

    @model_validator(mode="after")
    def _shares(self) -> "DiurnalAvailability":
        bad = {t: s for t, s in self.available_share.items() if not 0.0 < s <= 1.0}
        if bad:
            raise ValueError(f"available_share must lie in (0, 1], got {bad}")
        return self


class TraceAvailability(StrictModel):
    """Windows from a Parquet file with columns ``start_s`` and ``end_s`` (seconds into the period)
    and either ``client`` (a client id) or ``device_class`` (a tier name: the window holds for every
    device of that tier, shifted per device by up to ``phase_jitter_s``). The trace repeats every
    ``period_s``."""

    kind: Literal["trace"] = "trace"
    path: str = Field(..., description="the trace: a path or storage URI (configs/availability/ holds an example)")
    period_s: Optional[PositiveFloat] = Field(None, description="the trace's period (default: its latest end_s)")
    phase_jitter_s: NonNegativeFloat = Field(
        0.0, description="device_class rows: each device's windows shifted by a seeded offset in [0, this)"
    )


AvailabilityConfig = Annotated[
    Union[AlwaysAvailable, DiurnalAvailability, TraceAvailability],
    Field(discriminator="kind"),
    BeforeValidator(_bare_kind),
]
AVAILABILITY_KINDS = (AlwaysAvailable, DiurnalAvailability, TraceAvailability)
