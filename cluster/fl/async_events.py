"""Buffered asynchronous aggregation on the virtual clock (FedBuff, Nguyen et al. 2022), as plain
state: which devices are in flight, since which model version and until when; which reported
since the last server step; the model versions they still train from.

Events are ordered by virtual time, ties broken by client id, so the order never depends on how
clients are spread over workers or nodes. A device trains when it reports, from the model version
it took when it started (kept here until no device in flight needs it), so its own state (an NCF
user vector, Ditto's personal model) changes when its training ends, as on a phone."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True, order=True)
class Flight:
    """One device in flight: it reports at ``finish_s`` having trained from model ``version``."""

    finish_s: float
    client: int
    version: int
    start_s: float


def staleness_weight(staleness: np.ndarray, exponent: float) -> np.ndarray:
    """FedBuff's discount of an update computed ``staleness`` server steps ago: (1 + s)^−a."""
    return np.power(1.0 + np.asarray(staleness, np.float64), -exponent)


class AsyncEvents:
    """``concurrency`` devices in flight; the server steps once ``buffer_size`` have reported."""

    def __init__(
        self,
        concurrency: int,
        buffer_size: int,
        staleness_exponent: float,
        tier_staleness: bool = False,
        n_tiers: int = 1,
    ):
        """``tier_staleness``: discount each update relative to its tier's mean discount so far
        (over ``n_tiers`` tiers) instead of absolutely."""
        self.concurrency = concurrency
        self.buffer_size = buffer_size
        self.staleness_exponent = staleness_exponent
        self.tier_staleness = tier_staleness
        self.discount_sum = np.zeros(n_tiers)
        self.discount_count = np.zeros(n_tiers)
        self.now_s = 0.0
        self.version = 0
        self.flights: list[Flight] = []  # a heap: the earliest report first, ties by client id
        self.started_at_version: set[int] = set()
        self.snapshots: dict[int, dict[str, np.ndarray]] = {}
        self.starts = 0  # batches of starts priced so far: each draws its latencies from its own stream

    @property
    def busy(self) -> set[int]:
        """Devices that may not start now: those in flight, and those that already trained from
        the current model version."""
        return {f.client for f in self.flights} | self.started_at_version

    def start(self, clients: np.ndarray, latency_s: np.ndarray, params: dict[str, np.ndarray]) -> None:
        """``clients`` take the current model now and report ``latency_s`` (k,) later."""
        if len(clients) and self.version not in self.snapshots:
            self.snapshots[self.version] = {name: value.copy() for name, value in params.items()}
        for client, latency in zip(clients, latency_s):
            heapq.heappush(self.flights, Flight(self.now_s + float(latency), int(client), self.version, self.now_s))
            self.started_at_version.add(int(client))
        self.starts += 1

    def next_report(self) -> Flight:
        """The next device to report; the clock moves to its time."""
        flight = heapq.heappop(self.flights)
        self.now_s = max(self.now_s, flight.finish_s)
        return flight

    def stepped(self) -> None:
        """The server applied a step: a new model version, and the versions no device in flight
        trains from are let go."""
        self.version += 1
        self.started_at_version = set()
        needed = {f.version for f in self.flights}
        self.snapshots = {v: p for v, p in self.snapshots.items() if v in needed}

    def weights(
        self, n_samples: np.ndarray, versions: np.ndarray, tiers: Optional[np.ndarray] = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each reported update's weight (its samples' share times its staleness discount) and
        its staleness, for updates trained from ``versions`` by devices of ``tiers``. Under
        ``tier_staleness`` the discount is over its tier's mean discount so far, this step's
        included, and the step rescaled to the plain discounts' total (so the step is no larger):
        within a tier a staler update still weighs less, but a slow tier as a whole is not heard
        less for being slow."""
        staleness = self.version - np.asarray(versions, np.int64)
        share = np.asarray(n_samples, np.float64) / max(float(np.sum(n_samples)), 1.0)
        discount = staleness_weight(staleness, self.staleness_exponent)
        if self.tier_staleness and tiers is not None and len(discount):
            n_tiers = len(self.discount_sum)
            self.discount_sum += np.bincount(tiers, weights=discount, minlength=n_tiers)
            self.discount_count += np.bincount(tiers, minlength=n_tiers)
            relative = discount / (self.discount_sum[tiers] / self.discount_count[tiers])
            plain_total = float(np.sum(share * discount))
            discount = relative * plain_total / max(float(np.sum(share * relative)), 1e-300)
        return share * discount, staleness

    def state_dict(self) -> dict:
        flights = sorted(self.flights)
        return {
            "now_s": self.now_s,
            "version": self.version,
            "flights": {
                "finish_s": np.array([f.finish_s for f in flights], np.float64),
                "client": np.array([f.client for f in flights], np.int64),
                "version": np.array([f.version for f in flights], np.int64),
                "start_s": np.array([f.start_s for f in flights], np.float64),
            },
            "started_at_version": np.array(sorted(self.started_at_version), np.int64),
            "snapshots": {str(v): p for v, p in self.snapshots.items()},
            "starts": self.starts,
            "discount_sum": self.discount_sum.copy(),
            "discount_count": self.discount_count.copy(),
        }

    def load_state_dict(self, state: Optional[dict]) -> None:
        if state is None:
            raise ValueError("the checkpoint has no asynchronous state: it was written by a synchronous run")
        self.now_s = float(state["now_s"])
        self.version = int(state["version"])
        flights = state["flights"]
        self.flights = [
            Flight(float(f), int(c), int(v), float(s))
            for f, c, v, s in zip(flights["finish_s"], flights["client"], flights["version"], flights["start_s"])
        ]
        heapq.heapify(self.flights)
        self.started_at_version = {int(c) for c in state["started_at_version"]}
        self.snapshots = {
            int(v): {n: np.array(a, np.float32) for n, a in p.items()} for v, p in state["snapshots"].items()
        }
        self.starts = int(state["starts"])
        self.discount_sum = np.asarray(state["discount_sum"], np.float64).copy()
        self.discount_count = np.asarray(state["discount_count"], np.float64).copy()
