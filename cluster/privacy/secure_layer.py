"""Secure aggregation as a layer the round loop composes: the server tells each round's cohort how
to mask (``SecureRound``), prices the protocol on the virtual clock, adds the masked uploads as they
arrive and turns the unmasked sum into the round's average — FedAvg's sample-weighted mean, Channel's
per-entry mean over holders, or under distributed DP the clipped sum plus the devices' noise over m.

What the server computes from secure sums alone: every strategy whose server step is the average
(FedAvg, FedProx, Ditto), Channel (one weight slot per public width), the training loss (a weighted
slot; not under DP). What it cannot: anything that reads one device's own upload (Cali3F's
clustering and FastAgg, SCAFFOLD's step, CEAG's per-client re-weighting) — the config refuses
those with the reason."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import numpy as np

from cluster.fl.clock import RoundCosts
from cluster.fl.selection import RoundPlan
from cluster.privacy.secure_agg import FixedPoint, SecureAggregationAborted, SecureRound, SecureSum, device_key
from cluster.privacy.secure_upload import MaskedUpload, Masking, UploadLayout
from cluster.rng import stream
from configs.privacy_schema import SecureAggregationConfig

# Bytes of one public key, and of one Shamir share of a 32-byte secret with its envelope.
KEY_BYTES = 32
SHARE_BYTES = 48
PROTOCOL_ROUNDS = 3  # advertise keys, share keys, unmask: each a message round besides the upload


@dataclass(frozen=True)
class SecureAggregate:
    """What the server holds after a secure round: the survivors, the average of their uploads
    (empty when the round could not be unmasked), the training loss (NaN under DP) and the
    round's record fields."""

    clients: np.ndarray
    average: dict[str, np.ndarray]
    train_loss: float
    fields: dict = field(default_factory=dict)


class SecureAggregationLayer:
    """``tier_of_user`` (n,) and ``dropout`` (T,) the per-tier rate of dropping out after masking;
    ``weight_scale``: the mean train samples of eligible clients; ``widths``: Channel's distinct
    public widths (sorted); ``held_entries(width)``: the dense entries a width holds;
    ``dp``: (clip norm, per-device noise std) under distributed DP, with ``entry_share`` under
    Channel (each dense entry's expected share of holders, as central DP divides by);
    ``tier_names``: the record counts the dropouts per tier."""

    def __init__(
        self,
        cfg: SecureAggregationConfig,
        tier_of_user: np.ndarray,
        dropout: np.ndarray,
        weight_scale: float,
        seed: int,
        widths: tuple[float, ...] = (1.0,),
        held_entries: Optional[Callable[[float], dict[str, np.ndarray]]] = None,
        dp: Optional[tuple[float, float]] = None,
        entry_share: Optional[dict[str, np.ndarray]] = None,
        tier_names: tuple[str, ...] = (),
    ):
        self.cfg = cfg
        self.field = FixedPoint(cfg.field_bits, cfg.fraction_bits)
        self.tier_of_user = tier_of_user
        self.dropout = dropout
        self.weight_scale = weight_scale
        self.seed = seed
        self.widths = widths
        # Each width's masks, built once: every round's Channel average reads them per tensor.
        self.held = {w: held_entries(w) for w in widths} if held_entries is not None and len(widths) > 1 else None
        self.dp = dp
        self.entry_share = entry_share
        self.tier_names = tier_names
        self.key = device_key(seed)

    def round(self, plan: RoundPlan) -> SecureRound:
        """The round's masking cohort (its kept clients) and those that will drop out after masking."""
        cohort = np.sort(plan.kept_clients)
        rng = stream(self.seed, "secagg-dropout", plan.round_index)
        drops = rng.random(len(cohort)) < self.dropout[self.tier_of_user[cohort]]
        return SecureRound(
            plan.round_index,
            cohort,
            self.cfg.neighbours,
            self.cfg.threshold,
            self.field,
            cohort[drops],
            self.weight_scale,
            self.widths,
            self.dp,
            self.seed,
        )

    def price(self, costs: RoundCosts, cohort_size: int, model_entries: int) -> RoundCosts:
        """``costs`` under the protocol: every device uploads the whole model in the field (what
        compression saved is gone), plus its keys and shares; downloads its neighbours' keys and
        shares; expands its self mask and one mask per neighbour."""
        degree = cohort_size - 1 if self.cfg.neighbours is None else min(self.cfg.neighbours, cohort_size - 1)
        degree = max(degree, 0)
        masked = (model_entries + len(self.widths) + 1) * self.cfg.field_bits / 8
        protocol_up = 2 * KEY_BYTES + 2 * degree * SHARE_BYTES
        protocol_down = degree * (2 * KEY_BYTES + SHARE_BYTES)
        n = len(costs.upload_bytes)
        mask_samples = (degree + 1) * (model_entries + len(self.widths) + 1) / self.cfg.mask_entries_per_sample
        return replace(
            costs,
            upload_bytes=np.full(n, masked + protocol_up),
            download_bytes=np.asarray(costs.download_bytes, np.float64) + protocol_down,
            work_samples=np.asarray(costs.work_samples, np.float64) + mask_samples,
            fixed_s=costs.fixed_s + PROTOCOL_ROUNDS * self.cfg.round_trip_s,
        )

    def begin(self, secure: SecureRound) -> "RoundSum":
        return RoundSum(self, secure)

    def guard(self, plan: RoundPlan) -> Masking:
        """What the round's devices do before uploading: mask under the round's ``SecureRound``."""
        return Masking(self.round(plan))


class RoundSum:
    """One round's server side: ``add`` each worker's masked uploads as they arrive (the only
    thing a worker can hand in: anything else is refused at the boundary), then ``finish``."""

    def __init__(self, layer: SecureAggregationLayer, secure: SecureRound):
        self.layer = layer
        self.secure = secure
        self.layout: Optional[UploadLayout] = None
        self.sum: Optional[SecureSum] = None
        self.clipped = 0

    def add(self, upload) -> np.ndarray:
        if not isinstance(upload, MaskedUpload):
            raise TypeError(f"under secure aggregation a worker hands in masked uploads, not {type(upload).__name__}")
        if self.layout is None:
            self.layout = upload.layout
            self.sum = SecureSum(self.secure, upload.layout.size, self.layer.key)
        elif upload.layout != self.layout:
            raise ValueError("workers sent uploads of different layouts in one round")
        assert self.sum is not None
        if len(upload.clients):
            self.sum.add(upload.clients, upload.masked)
        self.clipped += upload.clipped_entries
        return upload.clients

    def finish(self, params: dict[str, np.ndarray], denominator: int) -> SecureAggregate:
        """The survivors' average; ``denominator``: m, the fixed divisor under distributed DP."""
        secure = self.secure
        fields = {
            "secagg_dropped": int(len(secure.dropped)),
            "secagg_clipped_entries": self.clipped,
            "secagg_aborted": 0,
        }
        dropped_tiers = np.bincount(self.layer.tier_of_user[secure.dropped], minlength=len(self.layer.tier_names))
        fields.update({f"secagg_dropped_{name}": int(n) for name, n in zip(self.layer.tier_names, dropped_tiers)})
        if self.sum is None or not self.sum.arrived:
            return SecureAggregate(np.zeros(0, np.int64), {}, float("nan"), fields)
        try:
            total, survivors, expanded = self.sum.unmask()
        except SecureAggregationAborted:
            fields["secagg_aborted"] = 1
            return SecureAggregate(np.zeros(0, np.int64), {}, float("nan"), fields)
        fields["secagg_server_masks"] = expanded
        assert self.layout is not None
        tensors, slots, loss = self.layout.split(total)
        if self.layer.dp is not None:
            average = {name: self._private_mean(name, value, denominator) for name, value in tensors.items()}
            return SecureAggregate(survivors, average, float("nan"), fields)
        weight = float(slots.sum())
        average = {name: self._mean(name, value, slots, weight) for name, value in tensors.items()}
        return SecureAggregate(survivors, average, loss / weight if weight > 0 else float("nan"), fields)

    def _private_mean(self, name: str, value: np.ndarray, denominator: int) -> np.ndarray:
        """The noised sum over m; under Channel, over m times the entry's expected share of holders."""
        share = self.layer.entry_share.get(name) if self.layer.entry_share is not None else None
        if share is None:
            return (value / denominator).astype(np.float32)
        return np.divide(value, denominator * share, out=np.zeros_like(value), where=share > 0).astype(np.float32)

    def _mean(self, name: str, value: np.ndarray, slots: np.ndarray, weight: float) -> np.ndarray:
        """FedAvg's weighted mean; under Channel each entry over the weight of the widths holding it."""
        if self.layer.held is not None:
            held = [self.layer.held[w].get(name) for w in self.layer.widths]
            if all(h is not None for h in held):
                holders = sum(s * np.asarray(h, np.float64) for s, h in zip(slots, held))
                return np.divide(value, holders, out=np.zeros_like(value), where=holders > 0).astype(np.float32)
        return (value / weight).astype(np.float32) if weight > 0 else np.zeros_like(value, np.float32)
