"""SCAFFOLD (Karimireddy et al. 2020, "Stochastic Controlled Averaging for Federated Learning").

Server and client each keep a control variate of the dense part — the server c, each client
c_i — that estimates the drift of local steps on skewed data. A client steps on g + c − c_i,
then sets c_i⁺ = c_i − c + (w − w_i)/(K·η) (option II) and uploads its model update and
c_i⁺ − c_i; the server averages the model updates as FedAvg does and moves
c += (1/N)·Σ(c_i⁺ − c_i) over the N clients with training data.

Decided: the variates cover the dense part only (the NCF head and MLP, a click model's layers),
not the embedding tables: an item table's variate would cost every client the whole table, and an
embedding row's gradient is already the client's own. The maths: ``maths.py``; the device half:
``device.py``; what each client keeps is a dense part's size, checked against a budget
(``device_bytes_per_client``)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Optional

import numpy as np

from cluster.fl.strategies.base import AveragingStrategy, ExtraPayload
from cluster.fl.strategies.scaffold.maths import next_server_control
from cluster.fl.types import ClientSettings, ClientUpdate

# What a worker process may spend on its clients' control variates: a quarter of the 4 GiB each
# process is held to, which leaves the rest for the data, the model and training.
DEVICE_STATE_BUDGET_BYTES = 2**30


class Scaffold(AveragingStrategy):
    compute_multiplier = 1.0  # one extra add per dense parameter and step

    def __init__(self, sampler, dense0: dict[str, np.ndarray], n_clients: int):
        super().__init__(sampler)
        self.control = {name: np.zeros_like(value, dtype=np.float32) for name, value in dense0.items()}
        self.n_clients = n_clients

    def configure(self, clients: np.ndarray, settings: Optional[ClientSettings]) -> ClientSettings:
        return replace(settings if settings is not None else ClientSettings(), control=self.control)

    def aggregate(
        self, merged: ClientUpdate, delta: dict[str, np.ndarray], params: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        if merged.control_deltas is not None and len(merged.clients):
            self.control = {
                name: next_server_control(value, merged.control_deltas[name], self.n_clients)
                for name, value in self.control.items()
            }
        return delta

    def extra_payload(self, spec) -> ExtraPayload:
        """Every client also downloads c and uploads c_i⁺ − c_i: a dense part each way."""
        entries = sum(math.prod(shape) for shape in spec.dense_shapes().values())
        return ExtraPayload(upload_entries=entries, download_bytes=4 * entries, tensors=len(spec.dense_shapes()))

    def state_dict(self) -> dict:
        return {"control": {name: value.copy() for name, value in self.control.items()}}

    def load_state_dict(self, state: Optional[dict]) -> None:
        if state is None or "control" not in state:
            raise ValueError("the checkpoint has no SCAFFOLD control variate: it was written by another strategy")
        self.control = {name: np.array(value, dtype=np.float32) for name, value in state["control"].items()}


def device_bytes_per_client(spec) -> int:
    """What each client keeps on top of FedAvg: its control variate, a dense part in float32."""
    return 4 * sum(math.prod(shape) for shape in spec.dense_shapes().values())


def check_device_state(cfg, spec, clients_per_worker: int) -> None:
    """Refuse a run whose largest worker would hold more control variates than the budget."""
    need = clients_per_worker * device_bytes_per_client(spec)
    if need > DEVICE_STATE_BUDGET_BYTES:
        raise ValueError(
            f"SCAFFOLD keeps a control variate of the dense part per client ({device_bytes_per_client(spec):,} bytes): "
            f"{clients_per_worker:,} clients on one worker need {need / 2**30:.2f} GiB, over the "
            f"{DEVICE_STATE_BUDGET_BYTES / 2**30:.0f} GiB a worker may give it (a quarter of the 4 GiB per process); "
            f"raise fl.runtime.workers_per_tier to spread the clients, or narrow the model"
        )
