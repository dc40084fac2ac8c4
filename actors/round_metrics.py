"""Round metrics for the Ray dashboard (Prometheus export through ``ray.util.metrics``)."""

from __future__ import annotations

import math
import threading
import time
from typing import Optional

from ray.util.metrics import Counter, Gauge

_RUN = ("run",)
_RUN_TIER = ("run", "tier")


class RoundMetrics:
    """Created inside the aggregator actor; each record of a round updates every series."""

    def __init__(self, run: str, tier_names: tuple[str, ...], metric_names: tuple[str, ...], refresh_s: float = 2.0):
        """``metric_names``: the model family's quality measures (``ModelOps.metric_names``); each
        is exported as ``fairfleet_<name>`` per tier."""
        self.run = run
        self.tier_names = tier_names
        self.metric_names = metric_names
        self._last: Optional[dict] = None
        self._lock = threading.Lock()
        # Ray drops a gauge from the export about two report intervals after its last set();
        # re-setting the last values keeps a slow run's series on the dashboard between rounds.
        self._refresher = threading.Thread(target=self._refresh, args=(refresh_s,), daemon=True)
        self._refresher.start()
        self.round = Gauge("fairfleet_round", "last finished federated round", tag_keys=_RUN)
        self.sim_round_s = Gauge("fairfleet_sim_round_seconds", "simulated duration of the last round", tag_keys=_RUN)
        self.sim_time_s = Gauge("fairfleet_sim_time_seconds", "simulated time since the run started", tag_keys=_RUN)
        self.updates_per_s = Gauge(
            "fairfleet_client_updates_per_second", "client updates per wall second", tag_keys=_RUN
        )
        self.selected = Gauge("fairfleet_clients_selected", "clients selected in the last round", tag_keys=_RUN_TIER)
        self.dropped = Gauge("fairfleet_clients_dropped", "stragglers dropped in the last round", tag_keys=_RUN_TIER)
        self.failed = Gauge(
            "fairfleet_clients_failed", "clients lost to worker failures in the last round", tag_keys=_RUN_TIER
        )
        self.dropped_total = Counter(
            "fairfleet_clients_dropped_total", "stragglers dropped since the start", tag_keys=_RUN_TIER
        )
        self.quality = {
            name: Gauge(
                f"fairfleet_{name}", f"{name} at the last evaluation (tier 'all' = overall)", tag_keys=_RUN_TIER
            )
            for name in metric_names
        }
        self.wall_round_s = Gauge(
            "fairfleet_wall_round_seconds", "real (wall) duration of the last round", tag_keys=_RUN
        )
        self.train_loss = Gauge(
            "fairfleet_train_loss", "sample-weighted training loss of the last round's kept clients", tag_keys=_RUN
        )
        # Private runs only (fl.privacy other than none): the privacy spent so far.
        self.dp_epsilon = Gauge(
            "fairfleet_dp_epsilon", "differential privacy: epsilon spent after the last round", tag_keys=_RUN
        )
        # Asynchronous mode only (fl.mode: async): devices in flight, and per tier the staleness
        # of the applied updates and how many a simulated minute applies.
        self.in_flight = Gauge(
            "fairfleet_async_in_flight", "devices in flight after the last server step", tag_keys=_RUN
        )
        self.staleness = Gauge(
            "fairfleet_async_staleness",
            "mean staleness of the tier's updates in the last server step",
            tag_keys=_RUN_TIER,
        )
        self.updates_per_sim_minute = Gauge(
            "fairfleet_async_updates_per_sim_minute",
            "the tier's updates the last server step applied, per minute of simulated time",
            tag_keys=_RUN_TIER,
        )
        # CEAG only (fl.fairness.kind: ceag): the tier multipliers and the gaps they step on.
        self.ceag_lambda = Gauge(
            "fairfleet_ceag_lambda", "CEAG multiplier lambda of the tier after the last round", tag_keys=_RUN_TIER
        )
        self.ceag_psi = Gauge(
            "fairfleet_ceag_psi", "CEAG excess accuracy gap psi of the tier (buffered)", tag_keys=_RUN_TIER
        )

    def _refresh(self, every_s: float) -> None:
        while True:
            time.sleep(every_s)
            with self._lock:
                if self._last is not None:
                    self._set_gauges(self._last)

    def _set_async(self, record: dict) -> None:
        self.in_flight.set(record["in_flight"], tags={"run": self.run})
        minutes = record["sim_round_s"] / 60.0
        for tier in self.tier_names:
            tags = {"run": self.run, "tier": tier}
            if math.isfinite(record.get(f"staleness_mean_{tier}", float("nan"))):
                self.staleness.set(record[f"staleness_mean_{tier}"], tags=tags)
            if minutes > 0:
                self.updates_per_sim_minute.set(record[f"aggregated_{tier}"] / minutes, tags=tags)

    def export(self, record: dict) -> None:
        with self._lock:
            self._set_gauges(record)
            for tier in self.tier_names:
                if record[f"dropped_{tier}"]:
                    self.dropped_total.inc(record[f"dropped_{tier}"], tags={"run": self.run, "tier": tier})
            # Keep the last evaluation on the gauges through rounds that do not evaluate.
            previous = self._last or {}
            self._last = {**{k: v for k, v in previous.items() if k.startswith(self.metric_names)}, **record}

    def _set_gauges(self, record: dict) -> None:
        run = {"run": self.run}
        self.round.set(record["round"], tags=run)
        self.sim_round_s.set(record["sim_round_s"], tags=run)
        self.sim_time_s.set(record["sim_time_s"], tags=run)
        if math.isfinite(record["client_updates_per_s"]):
            self.updates_per_s.set(record["client_updates_per_s"], tags=run)
        self.wall_round_s.set(record["wall_s"], tags=run)
        if math.isfinite(record.get("train_loss", float("nan"))):
            self.train_loss.set(record["train_loss"], tags=run)
        if "dp_epsilon" in record:
            self.dp_epsilon.set(record["dp_epsilon"], tags=run)
        if "in_flight" in record:
            self._set_async(record)
        for tier in self.tier_names:
            tags = {"run": self.run, "tier": tier}
            self.selected.set(record[f"selected_{tier}"], tags=tags)
            self.dropped.set(record[f"dropped_{tier}"], tags=tags)
            self.failed.set(record[f"failed_{tier}"], tags=tags)
            for gauge, key in ((self.ceag_lambda, f"lambda_{tier}"), (self.ceag_psi, f"psi_{tier}")):
                if math.isfinite(record.get(key, float("nan"))):
                    gauge.set(record[key], tags=tags)
        if any(name in record for name in self.metric_names):
            for tier in ("all", *self.tier_names):
                suffix = "" if tier == "all" else f"_{tier}"
                tags = {"run": self.run, "tier": tier}
                for key, gauge in self.quality.items():
                    value = record.get(key + suffix, float("nan"))
                    if math.isfinite(value):
                        gauge.set(value, tags=tags)
