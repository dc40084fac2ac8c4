"""What protects each user's data in the released model (``fl.privacy``): a tagged union, each kind
with only its own settings."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BeforeValidator, Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from configs.base import StrictModel


def _bare_kind(value):
    """``fl.privacy=central_dp`` stands for ``{kind: central_dp}``."""
    return {"kind": value} if isinstance(value, str) else value


class NoPrivacy(StrictModel):
    kind: Literal["none"] = "none"


class AdaptiveClipping(StrictModel):
    """Andrew et al. 2021: C follows a target quantile of the clients' update norms, from a noised
    count of the clients under it; the update's noise grows just enough that both together cost
    what the configured σ alone would."""

    target_quantile: float = Field(0.5, gt=0.0, lt=1.0, description="γ: the share of clients C should sit above")
    learning_rate: PositiveFloat = Field(0.2, description="η of the geometric step C ← C·exp(−η(b̃ − γ))")
    count_noise_multiplier: Optional[PositiveFloat] = Field(
        None, description="σ_b: the std of the noise on the count of clients under C (default m / 20)"
    )


class CentralDP(StrictModel):
    """User-level differential privacy with a trusted server (DP-FedAvg, McMahan et al. 2018):
    clients are sampled independently (Poisson), each one's whole update is clipped to L2 norm
    ``clip_norm`` and weighs the same, Gaussian noise of std ``noise_multiplier`` x ``clip_norm``
    is added to the sum, and the sum is divided by ``fl.clients_per_round``. The (ε, δ) after each
    round comes from dp-accounting's RDP accountant for the Poisson-subsampled Gaussian."""

    kind: Literal["central_dp"] = "central_dp"
    clip_norm: PositiveFloat = Field(1.0, description="C: the L2 norm each client's whole update is clipped to")
    noise_multiplier: Optional[float] = Field(
        None, gt=0.0, description="σ: the noise's std over C; or leave it out and set target_epsilon"
    )
    adaptive_clipping: Optional[AdaptiveClipping] = Field(
        None, description="let C follow a quantile of the update norms (clip_norm is where it starts); central DP only"
    )
    target_epsilon: Optional[PositiveFloat] = Field(
        None, description="the ε to reach after fl.rounds rounds: σ is solved for it (instead of noise_multiplier)"
    )
    delta: Optional[float] = Field(
        None, gt=0.0, lt=1.0, description="δ of the guarantee (default 1 / (10 × the number of clients))"
    )

    @model_validator(mode="after")
    def _one_noise_setting(self) -> "CentralDP":
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError("central_dp needs exactly one of noise_multiplier or target_epsilon")
        return self


class DistributedDP(CentralDP):
    """User-level differential privacy without a trusted server (needs ``fl.secure_aggregation``):
    each device clips its whole update to ``clip_norm`` and adds its share of the Gaussian noise,
    std σ·C/√m with m = ``fl.clients_per_round``, so the secure sum of m devices carries noise σ·C.
    Each round is accounted at the noise the survivors really added, σ·√(survivors / m)."""

    kind: Literal["distributed_dp"] = "distributed_dp"  # type: ignore[assignment]

    @model_validator(mode="after")
    def _fixed_clip(self) -> "DistributedDP":
        if self.adaptive_clipping is not None:
            raise ValueError("adaptive_clipping is central DP's: under distributed DP each device clips at a fixed C")
        return self


class LocalDP(StrictModel):
    """Local differential privacy: each device clips its whole update to ``clip_norm`` and adds
    Gaussian noise of std ``noise_multiplier`` x ``clip_norm`` to it before it leaves the phone,
    so even the server holds only noised updates. ε is a user's worst case: the Gaussian
    mechanism composed over every round the most-selected user took part in."""

    kind: Literal["local_dp"] = "local_dp"
    clip_norm: PositiveFloat = Field(1.0, description="C: the L2 norm each device's whole update is clipped to")
    noise_multiplier: PositiveFloat = Field(..., description="σ: the std of each device's noise over C")
    delta: Optional[float] = Field(
        None, gt=0.0, lt=1.0, description="δ of the guarantee (default 1 / (10 × the number of clients))"
    )


PrivacyConfig = Annotated[
    Union[NoPrivacy, CentralDP, DistributedDP, LocalDP], Field(discriminator="kind"), BeforeValidator(_bare_kind)
]
PRIVACY_KINDS = (NoPrivacy, CentralDP, DistributedDP, LocalDP)


class NoSecureAggregation(StrictModel):
    kind: Literal["none"] = "none"


class SecureAggregationConfig(StrictModel):
    """The server sees only the sum of a round's uploads (SecAgg; SecAgg+ with ``neighbours``):
    fixed-point uploads masked modulo 2^``field_bits``, recovery of devices that drop out after
    masking, priced on the virtual clock."""

    kind: Literal["secagg"] = "secagg"
    neighbours: Optional[PositiveInt] = Field(
        None,
        description="SecAgg+: the even number of neighbours each device masks with (none: every other "
        "device of the round, classic SecAgg)",
    )
    threshold: float = Field(
        0.5, gt=0.0, le=1.0, description="share of a device's neighbours that must survive to recover its masks"
    )
    field_bits: Literal[32, 64] = Field(32, description="k: uploads are integers modulo 2^k")
    fraction_bits: PositiveInt = Field(16, description="bits after the fixed point (resolution 2^-f)")
    dropout: dict[str, NonNegativeFloat] = Field(
        default_factory=dict,
        description="per tier name, the probability a device drops out after masking (default 0)",
    )
    mask_entries_per_sample: PositiveFloat = Field(
        2e5,
        description="mask entries a device expands (PRG) in the time it trains one sample: prices the masks' CPU",
    )
    round_trip_s: NonNegativeFloat = Field(
        0.05, description="simulated seconds each of the protocol's three extra message rounds adds"
    )

    @model_validator(mode="after")
    def _field_holds_the_point(self) -> "SecureAggregationConfig":
        if self.fraction_bits >= self.field_bits - 1:
            raise ValueError(
                f"fraction_bits {self.fraction_bits} leaves no integer bits in a {self.field_bits}-bit field"
            )
        if self.neighbours is not None and self.neighbours % 2:
            raise ValueError(f"neighbours must be even (a Harary graph), got {self.neighbours}")
        if any(rate >= 1.0 for rate in self.dropout.values()):
            raise ValueError("a tier's dropout rate must be below 1")
        return self


SecureAggregation = Annotated[
    Union[NoSecureAggregation, SecureAggregationConfig], Field(discriminator="kind"), BeforeValidator(_bare_kind)
]
SECURE_AGGREGATION_KINDS = (NoSecureAggregation, SecureAggregationConfig)
