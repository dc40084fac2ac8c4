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
from cluster.fl.clock import VirtualClock
from cluster.fl.selection import EpochSampler, PoissonSampler, RoundPlan, n_to_select
from cluster.fl.strategies import StrategyContext, make_strategy
from cluster.fl.worker_pool import WorkerPool
from cluster.rng import stream
from cluster.tiers.latency import TierTable
from cluster.tiers.optimizations import TierPlan
from configs.schema import FLConfig


@dataclass(frozen=True)
class FleetView:
    """What the server knows of the fleet: tier_of_user (n,), train_samples (n,) per client;
    reference_accuracy (T,): the unoptimized model's per-tier train accuracy, for CEAG;
    metadata (n, f): privacy-neutral encoded user columns, for Cali3F's first clusters;
    train_pairs (n,): each client's (click, non-click) pairs in its train data, which the
    pairwise measure's population rate is a mean over (None: pairs proportional to samples)."""

    tiers: TierTable
    tier_of_user: np.ndarray
    train_samples: np.ndarray
    reference_accuracy: Optional[np.ndarray] = None
    metadata: Optional[np.ndarray] = None
    train_pairs: Optional[np.ndarray] = None

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
        sampler_kind = PoissonSampler if self.privacy is not None else EpochSampler
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

    @property
    def sim_time_s(self) -> float:
        return self.clock.sim_time_s

    def plan_round(self) -> RoundPlan:
        fleet = self.fleet
        selected = self.strategy.select(n_to_select(self.cfg.clients_per_round, self.tier_plan.overselect))
        tiers = fleet.tier_of_user[selected]
        costs = self.ops.round_costs(
            selected,
            tiers,
            fleet.train_samples[selected],
            self.tier_plan,
            self.strategy.extra_payload(self.ops.spec),
            self.strategy.compute_multiplier,
        )
        return self.clock.plan(self.round_index, selected, tiers, costs)

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
        if self.privacy is not None:
            average, fields = self.privacy.aggregate(self.ops, merged, self.params, self.round_index)
            record.update(fields)
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
