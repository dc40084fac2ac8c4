"""Secure aggregation (Bonawitz et al. 2017; SecAgg+, Bell et al. 2020), simulated faithfully: the
server learns the sum of a round's uploads and nothing of any one of them.

Each device encodes its upload in fixed point modulo 2^k and adds masks drawn from seeded PRGs: a
pairwise mask shared with each of its neighbours (added by the lower id, subtracted by the higher,
so every pair cancels in the sum) and a self mask only it knows. The server adds what arrives; once
the uploads are in, the survivors reveal (as Shamir shares, simulated here) the self masks of the
survivors and the pairwise seeds of the devices that dropped out after masking, which the server
takes off. A dropped device's pairwise masks can be recovered only while at least ``threshold`` of
its neighbours survive; otherwise the round cannot be unmasked and is lost.

The neighbourhoods are SecAgg+'s: a Harary graph of degree k over a public random permutation of
the cohort (k ≥ cohort − 1: every other device, classic SecAgg). Pairwise seeds stand in for the
Diffie–Hellman agreement of each pair: devices derive them from key material the server's path
uses only to recover what the protocol lets it recover."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from cluster.rng import stream

SIGNED = {32: np.int32, 64: np.int64}
FIELD = {32: np.uint32, 64: np.uint64}


class SecureAggregationAborted(RuntimeError):
    """Too few of a dropped device's neighbours survived to recover its masks: the round's sum
    cannot be unmasked."""


@dataclass(frozen=True)
class FixedPoint:
    """Reals as integers modulo 2^``field_bits`` with ``fraction_bits`` bits after the point;
    a sum of n encodings decodes exactly while |sum| < 2^(field_bits − 1 − fraction_bits)."""

    field_bits: int = 32
    fraction_bits: int = 16

    @property
    def dtype(self):
        return FIELD[self.field_bits]

    @property
    def scale(self) -> float:
        return float(2**self.fraction_bits)

    def bound(self, n_summands: int) -> float:
        """The largest |entry| each of ``n_summands`` encodings may hold so their sum cannot wrap."""
        return (2.0 ** (self.field_bits - 1) - 1) / self.scale / max(1, n_summands)

    def encode(self, values: np.ndarray, n_summands: int) -> tuple[np.ndarray, int]:
        """``values`` clipped to ± ``bound(n_summands)``, rounded to the grid and wrapped into
        the field; also how many entries the clip changed."""
        bound = self.bound(n_summands)
        clipped = np.clip(values, -bound, bound)
        n_clipped = int(np.count_nonzero(clipped != values))
        integers = np.rint(np.asarray(clipped, np.float64) * self.scale).astype(np.int64)
        return integers.astype(SIGNED[self.field_bits]).view(self.dtype), n_clipped

    def decode(self, field_values: np.ndarray) -> np.ndarray:
        return np.asarray(field_values, self.dtype).view(SIGNED[self.field_bits]).astype(np.float64) / self.scale


def prg(seed: tuple[int, ...], size: int, field: FixedPoint) -> np.ndarray:
    """``size`` uniform field elements expanded from ``seed`` (PCG64; a device would run AES-CTR)."""
    raw = np.random.PCG64(np.random.SeedSequence(list(seed))).random_raw(size)
    return raw.astype(field.dtype) if field.field_bits == 32 else raw.view(np.uint64)


def neighbour_graph(cohort: np.ndarray, degree: Optional[int], seed: int, round_index: int) -> dict[int, np.ndarray]:
    """Each cohort device's neighbours (sorted ids): a Harary graph of even degree ``degree``
    over a permutation of the cohort drawn from the round's public stream; None or a degree of at
    least len(cohort) − 1: every other device."""
    n = len(cohort)
    if degree is None or degree >= n - 1:
        return {int(c): np.delete(cohort, i) for i, c in enumerate(cohort)}
    order = cohort[stream(seed, "secagg-graph", round_index).permutation(n)]
    half = max(1, degree // 2)
    offsets = np.concatenate([np.arange(1, half + 1), -np.arange(1, half + 1)])
    return {int(order[p]): np.unique(order[(p + offsets) % n]) for p in range(n)}


@dataclass(frozen=True)
class SecureRound:
    """What every device of a round's masking cohort is told, all of it public: the cohort (the
    clients kept for the round, sorted), the neighbourhood degree (None: all), the recovery
    threshold (a share of a device's neighbours), the field, and the devices that will drop out
    after masking (simulated: drawn by the server from each tier's rate). ``weight_scale``: the
    public constant an upload's sample count is divided by (the mean over eligible clients), so
    the weighted entries stay in the field's range; ``widths``: Channel's widths (one slot each);
    ``dp``: (clip norm, the noise std each device adds) under distributed DP, else None."""

    round_index: int
    cohort: np.ndarray
    degree: Optional[int]
    threshold: float
    field: FixedPoint
    dropped: np.ndarray
    weight_scale: float = 1.0
    widths: tuple[float, ...] = (1.0,)
    dp: Optional[tuple[float, float]] = None
    graph_seed: int = 0

    def neighbours(self) -> dict[int, np.ndarray]:
        return neighbour_graph(self.cohort, self.degree, self.graph_seed, self.round_index)

    def recovery_threshold(self, n_neighbours: int) -> int:
        return max(1, int(np.ceil(self.threshold * n_neighbours)))


def device_key(seed: int) -> int:
    """The key material the devices derive every pair's seed from."""
    return int(stream(seed, "secagg-device-keys").integers(2**62))


def _pair_seed(key: int, round_index: int, a: int, b: int) -> tuple[int, ...]:
    low, high = min(a, b), max(a, b)
    return (key, round_index, low, high, 0x5A17)


def _self_seed(key: int, round_index: int, client: int) -> tuple[int, ...]:
    return (key, round_index, client, 0x5E1F)


def mask(encoded: np.ndarray, client: int, secure: SecureRound, neighbours: np.ndarray, key: int) -> np.ndarray:
    """One device's upload ``encoded`` (D,) in the field, plus its self mask and its pairwise
    masks: + for each neighbour with a higher id, − for each with a lower one."""
    field, size = secure.field, len(encoded)
    masked = encoded + prg(_self_seed(key, secure.round_index, client), size, field)
    for other in neighbours:
        pair = prg(_pair_seed(key, secure.round_index, client, int(other)), size, field)
        masked = masked + pair if client < other else masked - pair
    return masked


class SecureSum:
    """The server's side: masked uploads (C, D) added as they arrive, modulo 2^k (addition in
    the field is exact and order-free, so arrival order never changes the sum), then unmasked."""

    def __init__(self, secure: SecureRound, size: int, key: int):
        self.secure = secure
        self.size = size
        self.key = key
        self.total = np.zeros(size, secure.field.dtype)
        self.arrived: list[np.ndarray] = []

    def add(self, clients: np.ndarray, masked: np.ndarray) -> None:
        if masked.dtype != self.secure.field.dtype or masked.ndim != 2 or masked.shape[1] != self.size:
            raise TypeError(
                f"a masked upload is (clients, {self.size}) {self.secure.field.dtype}, "
                f"got {masked.dtype} {masked.shape}"
            )
        self.total += np.add.reduce(masked, axis=0, dtype=self.secure.field.dtype)
        self.arrived.append(np.asarray(clients, np.int64))

    def unmask(self) -> tuple[np.ndarray, np.ndarray, int]:
        """The decoded sum (D,) of the survivors' uploads, the survivors (sorted) and the mask
        vectors the server expanded to unmask it; SecureAggregationAborted when a dropped
        device's masks cannot be recovered."""
        secure, field = self.secure, self.secure.field
        survivors = np.sort(np.concatenate(self.arrived)) if self.arrived else np.zeros(0, np.int64)
        masked_but_silent = np.setdiff1d(secure.cohort, survivors)
        graph = secure.neighbours()
        total = self.total.copy()
        expanded = 0
        for client in survivors:
            total -= prg(_self_seed(self.key, secure.round_index, int(client)), self.size, field)
            expanded += 1
        for gone in masked_but_silent:
            alive = np.intersect1d(graph[int(gone)], survivors)
            if len(alive) < secure.recovery_threshold(len(graph[int(gone)])):
                raise SecureAggregationAborted(
                    f"round {secure.round_index + 1}: client {int(gone)} dropped out after masking and only "
                    f"{len(alive)} of its {len(graph[int(gone)])} neighbours survived (threshold "
                    f"{secure.recovery_threshold(len(graph[int(gone)]))}): its masks cannot be recovered"
                )
            for other in alive:  # the survivor's upload holds ± the pair's mask: take it off
                pair = prg(_pair_seed(self.key, secure.round_index, int(gone), int(other)), self.size, field)
                total = total - pair if other < gone else total + pair
                expanded += 1
        return field.decode(total), survivors, expanded
