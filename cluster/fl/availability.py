"""When each device can train: windows within a repeating period, per client. A device is drawn
only while one of its windows is open at the virtual clock's time, in synchronous rounds (at the
round's start) and in asynchronous mode (when it would start). Diurnal windows are generated per
tier; a Parquet trace gives them per client or per device class (tier).

Availability never depends on a client's data, and only restricts who may be drawn: under
differential privacy's Poisson sampling a client is drawn with probability q only while available,
so its chance to be heard stays at most q and the accountant's bound with q still holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pyarrow as pa

from cluster.arrays import ranges
from cluster.rng import stream
from configs.availability_schema import DiurnalAvailability, TraceAvailability


class AvailabilityError(ValueError):
    """A trace that cannot be read as availability windows (missing columns, bad values)."""


@dataclass(frozen=True)
class Windows:
    """Each client's open windows ``[start, end)`` in seconds into a period of ``period_s``,
    as CSR arrays: client c's windows are ``starts[indptr[c]:indptr[c + 1]]`` (and ends)."""

    period_s: float
    indptr: np.ndarray
    starts: np.ndarray
    ends: np.ndarray

    def available(self, clients: np.ndarray, time_s: float) -> np.ndarray:
        """(k,) whether each of ``clients`` has a window open at ``time_s``."""
        phase = float(time_s) % self.period_s
        clients = np.asarray(clients, np.int64)
        counts = self.indptr[clients + 1] - self.indptr[clients]
        owner = np.repeat(np.arange(len(clients)), counts)
        rows = self._rows(clients)
        open_now = (self.starts[rows] <= phase) & (phase < self.ends[rows])
        return np.bincount(owner[open_now], minlength=len(clients)) > 0

    def next_open(self, clients: np.ndarray, time_s: float) -> float:
        """The earliest time ≥ ``time_s`` at which one of ``clients`` has a window open."""
        if self.available(clients, time_s).any():
            return float(time_s)
        rows = self._rows(np.asarray(clients, np.int64))
        if len(rows) == 0:
            raise ValueError("none of these clients is ever available")
        wait = np.mod(self.starts[rows] - float(time_s) % self.period_s, self.period_s)
        return float(time_s) + float(wait.min())

    def _rows(self, clients: np.ndarray) -> np.ndarray:
        """The window rows of ``clients``, client after client."""
        return ranges(self.indptr[clients], self.indptr[clients + 1] - self.indptr[clients])

    def share_open(self) -> np.ndarray:
        """(n,) the share of the period each client is available (its windows may not overlap)."""
        lengths = self.ends - self.starts
        per_client = np.add.reduceat(lengths, self.indptr[:-1]) if len(lengths) else np.zeros(len(self.indptr) - 1)
        per_client[np.diff(self.indptr) == 0] = 0.0
        return per_client / self.period_s


def _from_intervals(
    n_clients: int, period_s: float, owner: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> Windows:
    """Windows from (owner, start, end) triples, each wrapped into the period (a window across the
    period's end split in two)."""
    length = np.minimum(ends - starts, period_s)
    starts = np.mod(starts, period_s)
    ends = starts + length
    wraps = ends > period_s
    owner = np.concatenate([owner, owner[wraps]])
    all_starts = np.concatenate([starts, np.zeros(int(wraps.sum()))])
    all_ends = np.concatenate([np.minimum(ends, period_s), ends[wraps] - period_s])
    order = np.lexsort((all_starts, owner))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=n_clients))])
    return Windows(float(period_s), indptr.astype(np.int64), all_starts[order], all_ends[order])


def diurnal(cfg: DiurnalAvailability, tier_of_user: np.ndarray, tier_names: tuple[str, ...], seed: int) -> Windows:
    """One window a period per client, at a seeded phase, as long as its tier's share."""
    share = np.array([cfg.available_share.get(name, 1.0) for name in tier_names])[tier_of_user]
    phase = stream(seed, "availability-phase").random(len(tier_of_user)) * cfg.period_s
    owner = np.arange(len(tier_of_user))
    return _from_intervals(len(tier_of_user), cfg.period_s, owner, phase, phase + share * cfg.period_s)


def from_trace(
    cfg: TraceAvailability,
    table: pa.Table,
    tier_of_user: np.ndarray,
    tier_names: tuple[str, ...],
    seed: int,
    where: str,
) -> Windows:
    """Windows from a trace table (``client`` or ``device_class`` rows, ``start_s``, ``end_s``)."""
    columns = set(table.column_names)
    if not {"start_s", "end_s"} <= columns or not ({"client"} & columns or {"device_class"} & columns):
        raise AvailabilityError(
            f"{where}: an availability trace needs columns start_s, end_s and client or device_class; "
            f"it has {sorted(columns)}"
        )
    starts = np.asarray(table.column("start_s").to_numpy(), np.float64)
    ends = np.asarray(table.column("end_s").to_numpy(), np.float64)
    if len(starts) == 0 or not (np.isfinite(starts).all() and np.isfinite(ends).all()) or (ends <= starts).any():
        raise AvailabilityError(f"{where}: every window needs finite start_s < end_s, and there must be one")
    period = cfg.period_s or float(ends.max())
    n = len(tier_of_user)
    if "client" in columns:
        owner = np.asarray(table.column("client").to_numpy(), np.int64)
        if (owner < 0).any() or (owner >= n).any():
            raise AvailabilityError(f"{where}: client ids must lie in [0, {n}); found {owner.min()}..{owner.max()}")
        return _from_intervals(n, period, owner, starts, ends)
    classes = [str(c) for c in table.column("device_class").to_pylist()]
    unknown = sorted(set(classes) - set(tier_names))
    if unknown:
        raise AvailabilityError(f"{where}: device_class {unknown} are not tiers ({list(tier_names)})")
    row_tier = np.array([tier_names.index(c) for c in classes], np.int64)
    jitter = stream(seed, "availability-jitter").random(n) * cfg.phase_jitter_s
    owners, all_starts, all_ends = [], [], []
    for row, tier in enumerate(row_tier):
        members = np.flatnonzero(tier_of_user == tier)
        owners.append(members)
        all_starts.append(starts[row] + jitter[members])
        all_ends.append(ends[row] + jitter[members])
    return _from_intervals(n, period, np.concatenate(owners), np.concatenate(all_starts), np.concatenate(all_ends))


def draw_available(select, available, n: int, limit: int, top_up: bool = True) -> np.ndarray:
    """Up to ``n`` clients from ``select(k)`` that ``available(clients)`` lets through, drawing
    again for those passed over (at most ``limit`` draws in all); ``top_up`` False keeps one
    draw as it is (Poisson sampling: every client's inclusion stays independent)."""
    chosen: dict[int, None] = {}  # insertion-ordered, with set lookups
    drawn = 0
    while len(chosen) < n and drawn < max(limit, 1):
        batch = np.asarray(select(n - len(chosen)), np.int64)
        if len(batch) == 0:
            break
        drawn += len(batch)
        chosen.update(dict.fromkeys(int(c) for c in batch[available(batch)]))
        if not top_up:
            break
    return np.array(list(chosen), np.int64)


def windows_for(
    cfg, tier_of_user: np.ndarray, tier_names: tuple[str, ...], seed: int, read_trace=None
) -> Optional[Windows]:
    """The run's windows (None: always available); ``read_trace(path) -> (pa.Table, where)``."""
    if cfg.kind == "diurnal":
        return diurnal(cfg, tier_of_user, tier_names, seed)
    if cfg.kind == "trace":
        assert read_trace is not None
        table, where = read_trace(cfg.path)
        return from_trace(cfg, table, tier_of_user, tier_names, seed, where)
    return None
