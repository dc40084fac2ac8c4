"""What the aggregator does, as a plain class: plan a round (select, over-select, drop by
simulated latency), average what the kept clients uploaded, step the global model, advance the
virtual clock. The actor around it only moves data between this and the client workers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from cluster.fairness.ceag_round import CEAGController, PrimalStep
from cluster.fl.aggregation import add_weighted_deltas
from cluster.fl.server_optimizers import make_server_optimizer
from cluster.fl.families.base import ModelOps
from cluster.fl.availability import Windows, draw_available
from cluster.fl.clock import RoundCosts, VirtualClock
from cluster.fl.selection import EpochSampler, PoissonSampler, RoundPlan, n_to_select
from cluster.fl.strategies import StrategyContext, make_strategy
from cluster.fl.worker_pool import WorkerPool
from cluster.rng import stream
from cluster.tiers.latency import TierTable
from cluster.tiers.optimizations import TierPlan
from configs.privacy_schema import SecureAggregationConfig
from configs.schema import FLConfig


@dataclass(frozen=True)
class FleetView:
    """What the server knows of the fleet: tier_of_user (n,), train_samples (n,) per client;
    reference_accuracy (T,): the unoptimized model's per-tier train accuracy, for CEAG;
    metadata (n, f): privacy-neutral encoded user columns, for Cali3F's first clusters;
    train_pairs (n,): each client's (click, non-click) pairs in its train data, which the
    pairwise measure's population rate is a mean over (None: pairs proportional to samples);
    availability: when each client can train (``Windows``; None: always)."""

    tiers: TierTable
    tier_of_user: np.ndarray
    train_samples: np.ndarray
    reference_accuracy: Optional[np.ndarray] = None
    metadata: Optional[np.ndarray] = None
    train_pairs: Optional[np.ndarray] = None
    availability: Optional[Windows] = None

    def measure_counts(self, measure: str) -> np.ndarray:
        """(n,) what each client's share of a CEAG measure's population mean is counted in: its
        pairs for the pairwise measure, its samples for accuracy."""
        if measure == "pairwise" and self.train_pairs is not None:
            return self.train_pairs
        return self.train_samples


@dataclass(frozen=True)
class ServerSetup:
    """What a run's server and its round loop are built from: the FL settings, the family's ops,
    the fleet, the seed and which worker holds each client (n,)."""

    cfg: FLConfig
    ops: ModelOps
    fleet: FleetView
    seed: int
    worker_of_user: np.ndarray

    def server(self, initial_params: Optional[dict[str, np.ndarray]] = None) -> "FederatedServer":
        return FederatedServer(self.cfg, self.ops, self.fleet, self.seed, initial_params)


class FederatedServer:
    def __init__(
        self,
        cfg: FLConfig,
        ops: ModelOps,
        fleet: FleetView,
        seed: int,
        initial_params: Optional[dict[str, np.ndarray]] = None,
    ):
        """``initial_params``: w⁰ as ``ops.init_params(seed)`` gives it, computed by the caller
        (the aggregator actor gets it from the driver, so it never imports torch)."""
        self.cfg = cfg
        self.ops = ops
        self.fleet = fleet
        self.seed = seed
        self.tier_plan = TierPlan.resolve(cfg.optimization, cfg.effective_overselect, fleet.tiers.names)
        start = ops.init_params(seed) if initial_params is None else initial_params
        self.params = {name: np.array(value, dtype=np.float32) for name, value in start.items()}
        self.optimizer = make_server_optimizer(cfg.server_optimizer, cfg.server_lr)
        eligible = (fleet.train_samples > 0) & ~self.tier_plan.excluded[fleet.tier_of_user]
        self.privacy = None
        self.distributed_dp = None
        self.local_dp = None
        self.secure = None
        if cfg.privacy.kind == "local_dp":
            from cluster.privacy.local_dp import LocalDPAccount

            self.local_dp = LocalDPAccount(cfg.privacy, len(eligible))
        if cfg.privacy.kind == "distributed_dp":
            from cluster.privacy.distributed_dp import DistributedDPAccount

            self.distributed_dp = DistributedDPAccount(
                cfg.privacy,
                len(eligible),
                int(eligible.sum()),
                n_to_select(cfg.clients_per_round, self.tier_plan.overselect),
                cfg.clients_per_round,
                cfg.rounds,
            )
        if isinstance(cfg.secure_aggregation, SecureAggregationConfig):
            self.secure = self._secure_layer(cfg.secure_aggregation, eligible)
        if cfg.privacy.kind == "central_dp":
            from cluster.privacy.central_dp import CentralDPLayer  # the accountant's imports: DP runs alone

            n_select = n_to_select(cfg.clients_per_round, self.tier_plan.overselect)
            self.privacy = CentralDPLayer(
                cfg.privacy,
                len(eligible),
                int(eligible.sum()),
                n_select,
                cfg.clients_per_round,
                cfg.rounds,
                seed,
                self._entry_share(eligible),
            )
        private = self.privacy is not None or self.distributed_dp is not None
        sampler_kind = PoissonSampler if private else EpochSampler
        self.sampler = sampler_kind(np.flatnonzero(eligible), stream(seed, "selection"))
        self.strategy = make_strategy(
            cfg.strategy, StrategyContext(ops, self.params, fleet, eligible, self.sampler, cfg.client_lr, seed)
        )
        self.round_index = 0
        self.clock = VirtualClock(fleet.tiers, seed, cfg.local_epochs, cfg.clients_per_round, cfg.deadline_s)
        self.fairness = None
        if cfg.fairness.kind == "ceag":
            if fleet.reference_accuracy is None:
                raise ValueError("CEAG needs the reference model's per-tier accuracy (FleetView.reference_accuracy)")
            # A = Σ_t w_t A_t must be the measure's own population mean: pairs weigh the pairwise
            # rate as they weigh the bits in the buffers and the proxy's coefficients.
            tier_weights = np.bincount(
                fleet.tier_of_user, weights=fleet.measure_counts(cfg.fairness.measure), minlength=fleet.tiers.n_tiers
            )
            self.fairness = CEAGController(
                cfg.fairness, fleet.reference_accuracy, tier_weights, fleet.tiers.names, seed
            )

    def _entry_share(self, eligible: np.ndarray) -> Optional[dict[str, np.ndarray]]:
        """Under Channel, each dense entry's expected share of the round's clients that hold it."""
        if self.tier_plan.kind != "channel":
            return None
        from cluster.privacy.central_dp import expected_entry_share

        n_tiers = self.fleet.tiers.n_tiers
        in_tier = np.bincount(self.fleet.tier_of_user[eligible], minlength=n_tiers).astype(np.float64)
        widths = self.tier_plan.width(np.arange(n_tiers))
        return expected_entry_share(self.ops, widths, in_tier / max(in_tier.sum(), 1.0))

    def _secure_layer(self, cfg: SecureAggregationConfig, eligible: np.ndarray):
        """Secure aggregation over this fleet: its tiers' dropout rates, the public weight scale,
        Channel's widths, and the devices' noise under distributed DP."""
        from cluster.privacy.secure_layer import SecureAggregationLayer  # only secure runs load the protocol

        fleet = self.fleet
        dropout = np.array([cfg.dropout.get(name, 0.0) for name in fleet.tiers.names])
        tiers = np.arange(fleet.tiers.n_tiers)
        in_use = np.bincount(fleet.tier_of_user[eligible], minlength=len(tiers)) > 0
        widths = tuple(sorted({float(w) for w in self.tier_plan.width(tiers[in_use])})) or (1.0,)
        dp = None
        if self.distributed_dp is not None:
            dp = (self.distributed_dp.clip_norm, self.distributed_dp.device_noise_std)
        return SecureAggregationLayer(
            cfg,
            fleet.tier_of_user,
            dropout,
            float(fleet.train_samples[eligible].mean()) if eligible.any() else 1.0,
            self.seed,
            widths,
            self.ops.held_entries,
            dp,
            self._entry_share(eligible) if dp is not None else None,
            fleet.tiers.names,
        )

    def upload_guard(self, plan: RoundPlan):
        """What the round's devices do to their uploads before they leave: mask them (secure
        aggregation), noise them (local DP), or nothing (None)."""
        if self.secure is not None:
            return self.secure.guard(plan)
        if self.local_dp is not None:
            return self.local_dp.noise(plan.round_index)
        return None

    def secure_sum(self, guard):
        """The server's side of a secure round (add each worker's masked uploads, then finish),
        or None when the uploads come in the clear."""
        return self.secure.begin(guard.secure) if self.secure is not None else None

    def upload_stats(self, merged) -> dict:
        """The model family's upload statistics; under secure aggregation what the protocol reports."""
        if self.secure is not None:
            return {}
        return self.ops.upload_stats(merged)

    @property
    def sim_time_s(self) -> float:
        return self.clock.sim_time_s

    def plan_round(self) -> RoundPlan:
        fleet = self.fleet
        n_select = n_to_select(self.cfg.clients_per_round, self.tier_plan.overselect)
        selected = self.select_available(n_select)
        tiers = fleet.tier_of_user[selected]
        costs = self._costs(selected, tiers)
        if self.secure is not None:
            entries = sum(int(np.prod(v.shape)) for v in self.params.values())
            costs = self.secure.price(costs, self.cfg.clients_per_round, entries)
        return self.clock.plan(self.round_index, selected, tiers, costs, self._n_keep(len(selected), n_select))

    def _n_keep(self, n_drawn: int, n_select: int) -> int:
        """A Poisson cohort varies in size: it keeps the same share of its fastest that a fixed
        one does (all of it without over-selection), not a fixed n — keeping n would drop the
        slowest of every large cohort, an over-selection nobody asked for."""
        if not isinstance(self.sampler, PoissonSampler):
            return self.cfg.clients_per_round
        return int(np.ceil(n_drawn * self.cfg.clients_per_round / n_select - 1e-9))

    def client_settings(self, clients: np.ndarray):
        """What ``clients`` train with this round (their width, compression, cluster), or None."""
        return self.strategy.configure(
            clients, self.ops.client_settings(self.fleet.tier_of_user[clients], self.tier_plan)
        )

    def cluster_view(self):
        """The per-cluster models each client is evaluated and served with (Cali3F); None otherwise."""
        return self.strategy.serving_view()

    def apply(self, plan: RoundPlan, merged) -> dict:
        """Average the kept clients' uploads into the global model and close the round. With a
        fairness mitigation, its primal step shapes the average; returns its record fields."""
        step: Optional[PrimalStep] = None
        record: dict = {}
        if self.fairness is not None:
            step, record = self.fairness.round_step(
                merged.clients,
                merged.n_samples,
                merged.correct,
                self.fleet.tier_of_user,
                self.round_index,
                merged.correct_counts,
            )
        if self.secure is not None:
            average = merged.average
            record.update(merged.fields)
            if self.distributed_dp is not None and average:
                record.update(self.distributed_dp.spend(len(merged.clients)))
        elif self.privacy is not None:
            average, fields = self.privacy.aggregate(self.ops, merged, self.params, self.round_index)
            record.update(fields)
        elif self.local_dp is not None:
            average = self.ops.average(merged)  # noised on the devices, equal weights
            record.update(self.local_dp.spend(merged.clients))
        else:
            average = self.ops.average(merged, step.weights if step is not None else None)
        if step is not None and step.proxy_coefficients is not None:
            average = add_weighted_deltas(average, merged.proxy_deltas, step.proxy_coefficients)
        delta = self.strategy.aggregate(merged, average, self.params)
        if delta:
            self.optimizer.step(self.params, delta)
        self.clock.advance(plan)
        self.round_index += 1
        return record

    def select_available(self, n: int) -> np.ndarray:
        """The strategy's draw of ``n`` clients among those available now; when none is, the
        clock moves on to the next time one is and the draw is made there."""
        windows = self.fleet.availability
        if windows is None:
            return self.strategy.select(n)
        eligible = self.sampler.eligible
        poisson = isinstance(self.sampler, PoissonSampler)

        def draw() -> np.ndarray:
            now = self.clock.sim_time_s
            return draw_available(
                self.strategy.select, lambda clients: windows.available(clients, now), n, len(eligible), not poisson
            )

        drawn = draw()
        # Every eligible client's windows are looked at only when a draw came back empty, and the
        # clock moves on only when nobody is available (an empty Poisson draw is a chance, not night).
        if len(drawn) == 0 and not windows.available(eligible, self.clock.sim_time_s).any():
            self.clock.sim_time_s = windows.next_open(eligible, self.clock.sim_time_s)
            drawn = draw()
        return drawn

    def price_clients(self, clients: np.ndarray, draw_index: int) -> np.ndarray:
        """(k,) simulated seconds each of ``clients`` takes to download, train and upload now
        (asynchronous mode: each batch of starts draws from its own stream)."""
        tiers = self.fleet.tier_of_user[clients]
        return self.clock.plan(draw_index, clients, tiers, self._costs(clients, tiers), n_keep=len(clients)).latency_s

    def _costs(self, clients: np.ndarray, tiers: np.ndarray) -> RoundCosts:
        """What ``clients`` (of ``tiers``) compute, download and upload under the round's plan
        and strategy, as the model family prices it."""
        return self.ops.round_costs(
            clients,
            tiers,
            self.fleet.train_samples[clients],
            self.tier_plan,
            self.strategy.extra_payload(self.ops.spec),
            self.strategy.compute_multiplier,
        )

    def apply_async(self, merged, weights: np.ndarray, now_s: float) -> dict:
        """One asynchronous server step: the reported updates averaged with ``weights`` (their
        samples' shares times their staleness discounts), the strategy's and optimizer's step;
        the clock stands at ``now_s``."""
        if len(merged.clients):
            average = self.ops.average(merged, weights)
            delta = self.strategy.aggregate(merged, average, self.params)
            if delta:
                self.optimizer.step(self.params, delta)
        self.clock.sim_time_s = now_s
        self.round_index += 1
        return {}

    def close_unchanged(self, plan: RoundPlan) -> None:
        """End a planned round without changing the model: only the clock moves (a pricing-only
        run plans rounds to read their latencies and bytes, and trains none)."""
        self.clock.advance(plan)
        self.round_index += 1

    def after_round(self, pool: WorkerPool) -> dict:
        """The strategy's steps on the devices once the models are updated (Cali3F: eq. 4 and
        re-clustering); returns their record fields."""
        return self.strategy.after_round(pool, self.round_index, self.params)

    def state_dict(self) -> dict:
        return {
            "params": {k: v.copy() for k, v in self.params.items()},
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "round_index": self.round_index,
            "sim_time_s": self.clock.sim_time_s,
            "fairness": self.fairness.state_dict() if self.fairness is not None else None,
            "strategy": self.strategy.state_dict(),
            "distributed_dp": self.distributed_dp.state_dict() if self.distributed_dp is not None else None,
            "local_dp": self.local_dp.state_dict() if self.local_dp is not None else None,
            "central_dp": self.privacy.state_dict() if self.privacy is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        self.params = {k: np.array(v, dtype=np.float32) for k, v in state["params"].items()}
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self.round_index = int(state["round_index"])
        self.clock.sim_time_s = float(state["sim_time_s"])
        if self.fairness is not None:
            if state.get("fairness") is None:
                raise ValueError(
                    "the checkpoint has no fairness state: it was written by a run without "
                    "fl.fairness, so it cannot resume one with it"
                )
            self.fairness.load_state_dict(state["fairness"])
        self.strategy.load_state_dict(state.get("strategy"))
        if self.distributed_dp is not None:
            if state.get("distributed_dp") is None:
                raise ValueError(
                    "the checkpoint has no distributed-DP accountant state: it was written by a run without it"
                )
            self.distributed_dp.load_state_dict(state["distributed_dp"])
        if self.privacy is not None:
            self.privacy.load_state_dict(state.get("central_dp"))  # absent: a fixed C, as it started
        if self.local_dp is not None:
            if state.get("local_dp") is None:
                raise ValueError("the checkpoint has no local-DP state: it was written by a run without it")
            self.local_dp.load_state_dict(state["local_dp"])
