"""SCAFFOLD's device half: each phone keeps its control variate c_i of the dense part (zero before
its first round), adds c − c_i to every local gradient of the dense part, and after its pass sets
c_i⁺ = c_i − c + (w − w_i)/(K·η) (option II), K the local steps and η the dense rate, from the
exact local update (before any upload compression); it uploads the change c_i⁺ − c_i."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import numpy as np

from cluster.fl.strategies.base import DeviceHalf
from cluster.fl.strategies.scaffold.maths import next_client_control
from cluster.fl.types import ClientSettings

PREFIX = "control."


class ControlVariates(DeviceHalf):
    def initial_state(self, core) -> dict[str, np.ndarray]:
        return {
            PREFIX + n: np.zeros((core.n_clients, *shape), np.float32) for n, shape in core.spec.dense_shapes().items()
        }

    def correction(self, core, rows: np.ndarray, settings: Optional[ClientSettings]):
        """c − c_i (C, *shape) for the clients at ``rows``; None when the round sends no c."""
        if settings is None or settings.control is None:
            return None
        return {n: settings.control[n][None] - core.state[PREFIX + n][rows] for n in settings.control}

    def after_local(self, core, local, rows, settings, result):
        if settings is None or settings.control is None:
            return result
        changes = {}
        for name, server in settings.control.items():
            old = core.state[PREFIX + name][rows]
            new = next_client_control(old, server, result.dense_deltas[name], core.recipe.epochs, core.recipe.lr_dense)
            core.state[PREFIX + name][rows] = new
            changes[name] = new - old
        return replace(result, control_deltas=changes)
