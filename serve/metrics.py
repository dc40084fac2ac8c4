"""The fair retriever's metrics, exported through ``ray.util.metrics`` (Ray's Prometheus export
on every node, names prefixed ``ray_``; a counter gains ``_total``):

| series (as Prometheus sees it) | tags | what |
|---|---|---|
| ``ray_fairfleet_retriever_requests_total`` | app, route, status | HTTP answers of the ingress |
| ``ray_fairfleet_retriever_errors_total`` | app, route, status | the ones with status ≥ 400 |
| ``ray_fairfleet_retriever_latency_seconds`` (histogram) | app, route | time inside the replica |
| ``ray_fairfleet_retriever_batches_total``, ``_batched_requests_total`` | app | shard fan-outs and the requests they answered (one fan-out per batch) |
| ``ray_fairfleet_retriever_served_items_total`` | app, group | list slots served per item group |
| ``ray_fairfleet_retriever_partial_answers_total`` | app | answers a shard was missing from |
| ``ray_fairfleet_retriever_exposure`` / ``_exposure_target`` | app, group | e_g so far / m_g over the horizon |
| ``ray_fairfleet_retriever_mu`` | app, group | the dual offset μ_g (adjusted score = s − μ_g) |
| ``ray_fairfleet_retriever_mu_version``, ``_esp``, ``_fill``, ``_horizon_requests`` | app | dual-vector state |

Requests, errors and latency are observed by the deployment's router (``serve/http.dispatch``), so
a rejected body (422) or an unknown path (404, route "other") is counted like any other answer.
Observations are kept in the replica and recorded every ``FLUSH_S`` by a background thread, the
counters as one increment per series: a Ray metric record costs tens of microseconds, and three
per request plus a dozen per batch were 7 % of the replica's time under load. Ray 2.60 rebuilds a histogram's
``_sum`` from bucket midpoints, so only its buckets (quantiles) are exact; the mean batch size is
therefore two counters rather than a histogram. The exposure gauges come from the
dual-vector actor's own ``stats()`` (the one source of truth whatever the number of replicas),
polled by a background thread every ``STATS_REFRESH_S``: that also keeps them in the export while
no request arrives (Ray drops a gauge that is not set again within two report intervals)."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Optional

import numpy as np
from ray.util.metrics import Counter, Gauge, Histogram

LATENCY_BOUNDARIES_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
STATS_REFRESH_S = 2.0
FLUSH_S = 0.5

_APP = ("app",)
_ROUTE = ("app", "route")
_STATUS = ("app", "route", "status")
_GROUP = ("app", "group")


class RetrieverMetrics:
    """One per ingress replica; ``app`` tags every series (the FairFleet config's name)."""

    def __init__(self, app: str, group_names: list[str]):
        self.app = app
        self.group_names = [str(g) for g in group_names]
        self._app_tags = {"app": app}
        self._group_tags = [{"app": app, "group": g} for g in self.group_names]
        self.requests = Counter("fairfleet_retriever_requests", "HTTP answers of the fair retriever", tag_keys=_STATUS)
        self.errors = Counter(
            "fairfleet_retriever_errors", "HTTP answers with a status of 400 or more", tag_keys=_STATUS
        )
        self.latency = Histogram(
            "fairfleet_retriever_latency_seconds",
            "seconds from request to answer in the replica",
            boundaries=LATENCY_BOUNDARIES_S,
            tag_keys=_ROUTE,
        )
        self.batches = Counter(
            "fairfleet_retriever_batches", "shard fan-outs (one per batch of requests)", tag_keys=_APP
        )
        self.batched_requests = Counter(
            "fairfleet_retriever_batched_requests", "requests answered by the fan-outs", tag_keys=_APP
        )
        self.served = Counter("fairfleet_retriever_served_items", "list slots served, by item group", tag_keys=_GROUP)
        self.partial = Counter(
            "fairfleet_retriever_partial_answers", "answers missing a shard that did not reply", tag_keys=_APP
        )
        self.exposure = Gauge(
            "fairfleet_retriever_exposure", "exposure e_g served to the group so far in the horizon", tag_keys=_GROUP
        )
        self.target = Gauge(
            "fairfleet_retriever_exposure_target",
            "minimum exposure m_g owed to the group over the horizon",
            tag_keys=_GROUP,
        )
        self.mu = Gauge(
            "fairfleet_retriever_mu", "dual offset mu_g of the group (adjusted score = s - mu_g)", tag_keys=_GROUP
        )
        self.mu_version = Gauge("fairfleet_retriever_mu_version", "version of the dual vector", tag_keys=_APP)
        self.esp = Gauge(
            "fairfleet_retriever_esp", "share of groups at or above their pro-rata minimum exposure", tag_keys=_APP
        )
        self.fill = Gauge("fairfleet_retriever_fill", "share of the pro-rata owed exposure delivered", tag_keys=_APP)
        self.unreported = Gauge(
            "fairfleet_retriever_unreported_batches",
            "served batches whose exposure report the dual-vector actor has not acknowledged",
            tag_keys=_APP,
        )
        self.dropped = Gauge(
            "fairfleet_retriever_dropped_requests",
            "served requests whose report was given up (the outbox filled while the dual-vector "
            "actor could not be reached)",
            tag_keys=_APP,
        )
        self._outbox_seen: Optional[tuple[int, int]] = None
        self.horizon_requests = Gauge(
            "fairfleet_retriever_horizon_requests",
            "requests the dual-vector actor counted in the horizon",
            tag_keys=_APP,
        )
        # deques: append on the event loop and popleft in the flush thread are each atomic
        self._requests: deque[tuple[str, int, float]] = deque()
        self._batches: deque[tuple[np.ndarray, int, bool]] = deque()
        self._stop = threading.Event()
        self._poller: Optional[threading.Thread] = None

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self._requests.append((route, status, seconds))

    def observe_batch(self, served_groups: np.ndarray, n_requests: int, partial: bool) -> None:
        """``served_groups``: the batch's group ids of the served slots (−1 = empty slot)."""
        groups = np.asarray(served_groups).ravel()
        self._batches.append((np.bincount(groups[groups >= 0], minlength=len(self.group_names)), n_requests, partial))

    def flush(self) -> None:
        """Record what was observed since the last flush: counters once per series, the latency
        histogram once per request (Ray has no bulk observe)."""
        requests, batches = _drain(self._requests), _drain(self._batches)
        answers: dict[tuple[str, int], int] = {}
        for route, status, seconds in requests:
            answers[route, status] = answers.get((route, status), 0) + 1
            self.latency.observe(seconds, tags={"app": self.app, "route": route})
        for (route, status), count in answers.items():
            tags = {"app": self.app, "route": route, "status": str(status)}
            self.requests.inc(count, tags=tags)
            if status >= 400:
                self.errors.inc(count, tags=tags)
        if not batches:
            return
        self.batches.inc(len(batches), tags=self._app_tags)
        self.batched_requests.inc(sum(n for _, n, _ in batches), tags=self._app_tags)
        counts = np.sum([c for c, _, _ in batches], axis=0)
        for group in np.flatnonzero(counts):
            self.served.inc(int(counts[group]), tags=self._group_tags[group])
        partial = sum(n for _, n, was_partial in batches if was_partial)
        if partial:
            self.partial.inc(partial, tags=self._app_tags)

    def set_outbox(self, unreported: int, dropped_requests: int) -> None:
        """The replica's outbox after a batch; written only when it changed (most batches: 0, 0)."""
        if (unreported, dropped_requests) != self._outbox_seen:
            self._outbox_seen = (unreported, dropped_requests)
            self.unreported.set(unreported, tags=self._app_tags)
            self.dropped.set(dropped_requests, tags=self._app_tags)

    def set_stats(self, stats: dict) -> None:
        """The dual-vector actor's ``stats()``: exposure, m, mu per group; mu_version, requests, esp, fill."""
        for tags, exposure, target, mu in zip(self._group_tags, stats["exposure"], stats["m"], stats["mu"]):
            self.exposure.set(exposure, tags=tags)
            self.target.set(target, tags=tags)
            self.mu.set(mu, tags=tags)
        self.mu_version.set(stats["mu_version"], tags=self._app_tags)
        self.horizon_requests.set(stats["requests"], tags=self._app_tags)
        self.esp.set(stats["esp"], tags=self._app_tags)
        self.fill.set(stats["fill"], tags=self._app_tags)

    def poll_stats(self, fetch: Callable[[], dict], every_s: float = STATS_REFRESH_S) -> None:
        """In a daemon thread: ``flush()`` every ``FLUSH_S``, and call ``fetch`` (e.g.
        ``ray.get(dual.stats.remote())``) every ``every_s`` to set the gauges; a failed fetch (the
        actor restarting) keeps the last values."""

        def loop() -> None:
            next_fetch = 0.0
            while not self._stop.is_set():
                self.flush()
                if time.monotonic() >= next_fetch:
                    next_fetch = time.monotonic() + every_s
                    try:
                        self.set_stats(fetch())
                    except Exception:  # noqa: BLE001 - a restarting actor must not end the poller
                        pass
                self._stop.wait(FLUSH_S)
            self.flush()

        self._poller = threading.Thread(target=loop, name="retriever-metrics", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=10)


def _drain(queue: deque) -> list:
    items = []
    while True:
        try:
            items.append(queue.popleft())
        except IndexError:
            return items
