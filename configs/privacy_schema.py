"""What protects each user's data in the released model (``fl.privacy``): a tagged union, each kind
with only its own settings."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BeforeValidator, Field, PositiveFloat, model_validator

from configs.base import StrictModel


def _bare_kind(value):
    """``fl.privacy=central_dp`` stands for ``{kind: central_dp}``."""
    return {"kind": value} if isinstance(value, str) else value


class NoPrivacy(StrictModel):
    kind: Literal["none"] = "none"


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


PrivacyConfig = Annotated[Union[NoPrivacy, CentralDP], Field(discriminator="kind"), BeforeValidator(_bare_kind)]
PRIVACY_KINDS = (NoPrivacy, CentralDP)
