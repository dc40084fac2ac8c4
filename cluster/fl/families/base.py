"""What the server and the aggregator need to know about a model family, behind one interface:
its initial global parameters, what a client's round costs (work, bytes down, bytes up), the
settings a client trains with, how uploads merge and average, and how evaluations summarize.

``NCFOps`` (GMF / MLP / NeuMF, leave-one-out ranking; ``families/ncf/ops.py``) and ``ClickOps``
(DLRM / DIN, AUC; ``families/click/ops.py``) implement it, so the round loop is written once.
"""

from __future__ import annotations

from typing import Optional, Protocol

import numpy as np

from cluster.fl.clock import RoundCosts
from cluster.fl.strategies.base import ExtraPayload
from cluster.fl.families.click.model import ClickSpec
from cluster.fl.families.ncf.model import NCFSpec
from cluster.tiers.optimizations import TierPlan


NOTHING_EXTRA = ExtraPayload()


class ModelOps(Protocol):
    # Read-only, so an implementation's narrower field (``NCFOps.spec: NCFSpec``) fulfils it.
    @property
    def spec(self) -> NCFSpec | ClickSpec: ...

    def init_params(self, seed: int) -> dict[str, np.ndarray]: ...

    def round_costs(
        self,
        clients: np.ndarray,
        tiers: np.ndarray,
        samples: np.ndarray,
        plan: TierPlan,
        extra: ExtraPayload,
        passes: float,
    ) -> RoundCosts:
        """``extra`` and ``passes``: what the strategy adds to each client's payload and work."""

    def client_settings(self, tiers: np.ndarray, plan: TierPlan): ...

    def merge(self, results: list): ...

    def average(self, merged, weights: Optional[np.ndarray] = None) -> dict[str, np.ndarray]: ...

    def upload_stats(self, merged) -> dict: ...

    def fastagg(self, merged) -> dict[str, np.ndarray]:
        """Cali3F's FastAgg (eq. 5) of the merged uploads' embedding rows: the update of each
        shared embedding table, to add as is."""

    def summarize(
        self,
        owners: np.ndarray,
        a: np.ndarray,
        b: np.ndarray,
        tier_of_user: np.ndarray,
        tier_names: tuple[str, ...],
        split: str = "test",
    ) -> dict[str, float]: ...
