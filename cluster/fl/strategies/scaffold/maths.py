"""SCAFFOLD's control-variate maths (Karimireddy et al. 2020), for the device half (``device.py``)
and the server half (``server.py``)."""

from __future__ import annotations

import numpy as np


def next_client_control(
    client: np.ndarray, server: np.ndarray, local_update: np.ndarray, local_steps: int, lr: float
) -> np.ndarray:
    """Option II: c_i⁺ = c_i − c + (w − w_i)/(K·η) = c_i − c − Δw_i/(K·η), Δw_i = w_i − w the
    client's own update over its K local steps at rate η; ``client`` and ``local_update`` (C, *shape)."""
    return client - server[None] - local_update * np.float32(1.0 / (local_steps * lr))


def next_server_control(server: np.ndarray, client_changes: np.ndarray, n_clients: int) -> np.ndarray:
    """c + (1/N)·Σ_i (c_i⁺ − c_i) over the round's clients (``client_changes`` (C, *shape), in
    client-id order), N the clients with training data."""
    return server + client_changes.sum(axis=0, dtype=np.float32) * np.float32(1.0 / n_clients)
