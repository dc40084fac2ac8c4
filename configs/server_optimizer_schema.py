"""How the server applies the round's averaged client update (Reddi et al. 2021, "Adaptive
Federated Optimization"): a tagged union, each kind with only its own settings. The step size is
``fl.server_lr`` for every kind."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BeforeValidator, Field, PositiveFloat

from configs.base import StrictModel


def _bare_kind(value):
    """``fl.server_optimizer=adam`` stands for ``{kind: adam}``."""
    return {"kind": value} if isinstance(value, str) else value


class SGDServer(StrictModel):
    """θ += η·Δ: with η = 1, plain FedAvg."""

    kind: Literal["sgd"] = "sgd"


class MomentumServer(StrictModel):
    """FedAvgM (Hsu et al. 2019): m = β·m + Δ; θ += η·m."""

    kind: Literal["momentum"] = "momentum"
    beta: float = Field(0.9, ge=0.0, lt=1.0, description="β: the share of the last step kept in the next")


class AdagradServer(StrictModel):
    """FedAdagrad: v += Δ²; θ += η·Δ / (√v + τ)."""

    kind: Literal["adagrad"] = "adagrad"
    tau: PositiveFloat = Field(1e-3, description="τ: the adaptivity floor added to √v")


class AdamServer(StrictModel):
    """FedAdam: m = β₁·m + (1−β₁)·Δ; v = β₂·v + (1−β₂)·Δ²; θ += η·m / (√v + τ), no bias correction."""

    kind: Literal["adam"] = "adam"
    beta1: float = Field(0.9, ge=0.0, lt=1.0, description="β₁: decay of the first moment m")
    beta2: float = Field(0.99, ge=0.0, lt=1.0, description="β₂: decay of the second moment v")
    tau: PositiveFloat = Field(1e-3, description="τ: the adaptivity floor added to √v")


class YogiServer(StrictModel):
    """FedYogi: m as FedAdam; v −= (1−β₂)·Δ²·sign(v − Δ²); θ += η·m / (√v + τ)."""

    kind: Literal["yogi"] = "yogi"
    beta1: float = Field(0.9, ge=0.0, lt=1.0, description="β₁: decay of the first moment m")
    beta2: float = Field(0.99, ge=0.0, lt=1.0, description="β₂: how fast v follows Δ² (additively, not as a decay)")
    tau: PositiveFloat = Field(1e-3, description="τ: the adaptivity floor added to √v")


SERVER_OPTIMIZERS = (SGDServer, MomentumServer, AdagradServer, AdamServer, YogiServer)
ServerOptimizerConfig = Annotated[
    Union[SGDServer, MomentumServer, AdagradServer, AdamServer, YogiServer],
    Field(discriminator="kind"),
    BeforeValidator(_bare_kind),
]
