"""How a client trains, as one frozen value every model family reads: a module of its own, without
torch, so that the server and the experiment's build can carry a recipe without loading it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class LocalRecipe:
    """How a client trains: ``epochs`` full-batch SGD steps, the dense part at ``lr_dense``, the
    shared item tables at ``lr_item`` and a private user table at ``lr_user``; ``loss_reduction``
    'mean' averages the BCE over the client's samples, 'sum' adds it.
    ``negatives_per_positive``: hashed negatives an implicit-feedback (NCF) client samples.
    ``personal_lambda``: Ditto; each client also steps a personal dense part with this λ.
    ``prox_mu``: FedProx; μ(w − w_received) is added to the gradient of every shared tensor
    (item tables and dense part; not the private user table).
    ``ranking_bits``: the client reports CEAG pairwise ranking bits instead of each sample's
    correctness. ``proxy_gradient``: it also uploads −lr × the gradient of its mean pairwise
    logistic loss at the model it received (``cluster/fairness/ceag.pairwise_proxy_coefficients``)."""

    epochs: int = 1
    lr_dense: float = 1.0
    lr_item: float = 1.0
    lr_user: float = 1.0
    negatives_per_positive: int = 4
    loss_reduction: str = "mean"
    personal_lambda: Optional[float] = None
    prox_mu: float = 0.0
    ranking_bits: bool = False
    proxy_gradient: bool = False

    @classmethod
    def one_rate(cls, lr: float, **rest) -> "LocalRecipe":
        """Every parameter group at ``lr`` (RF²'s click-model recipe: lr 1)."""
        return cls(lr_dense=lr, lr_item=lr, lr_user=lr, **rest)
