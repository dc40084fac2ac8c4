"""FedProx (Li et al. 2020, "Federated Optimization in Heterogeneous Networks"). The server is
FedAvg's; on the device, each client's local objective adds μ/2·‖w − w_global‖² over the shared
model, so local steps stay near the model it received (``LocalRecipe.prox_mu``, applied by the
local-SGD loop and the GMF kernel). With one local step the term is zero at the only point where
it is evaluated, so FedProx differs from FedAvg only with ``fl.local_epochs`` above 1."""

from __future__ import annotations

from cluster.fl.strategies.base import AveragingStrategy


class FedProx(AveragingStrategy):
    compute_multiplier = 1.0  # one extra multiply-add per parameter and step: nothing the clock resolves


def recipe_settings(cfg) -> dict:
    return {"prox_mu": cfg.mu}
