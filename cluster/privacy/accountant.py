"""(ε, δ) of the Poisson-subsampled Gaussian mechanism over rounds, from Google's dp-accounting
(its RDP accountant): the accountant is the library's, never ours."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import dp_accounting
import numpy as np

from configs.privacy_schema import CentralDP

# The RDP accountant logs (through absl, on the stdlib logger "absl") every order it skips: small
# orders that do not converge at a low σ. Skipping one only loosens ε; the lines would flood a run.
logging.getLogger("absl").setLevel(logging.ERROR)


def _rounds(sampling_rate: float, noise_multiplier: float, rounds: int) -> dp_accounting.DpEvent:
    gaussian = dp_accounting.GaussianDpEvent(noise_multiplier)
    return dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(sampling_rate, gaussian), rounds)


def epsilon(sampling_rate: float, noise_multiplier: float, rounds: int, delta: float) -> float:
    """ε after ``rounds`` rounds, each including every client with probability ``sampling_rate``
    and adding Gaussian noise of ``noise_multiplier`` × the clip norm to the clipped sum."""
    if rounds == 0:
        return 0.0
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(_rounds(sampling_rate, noise_multiplier, rounds))
    return float(accountant.get_epsilon(delta))


def noise_for_epsilon(sampling_rate: float, target_epsilon: float, rounds: int, delta: float) -> float:
    """The smallest noise multiplier whose ε after ``rounds`` rounds is at most ``target_epsilon``
    (dp-accounting's calibration)."""
    return float(
        dp_accounting.calibrate_dp_mechanism(
            dp_accounting.rdp.RdpAccountant,
            lambda sigma: _rounds(sampling_rate, sigma, rounds),
            target_epsilon,
            delta,
            dp_accounting.mechanism_calibration.LowerEndpointAndGuess(1e-3, 1.0),
        )
    )


def epsilon_of_rounds(sampling_rate: float, noise_multipliers: list[float], delta: float) -> float:
    """ε after rounds whose noise differed (distributed DP: each round's noise is what its
    survivors added), one Poisson-subsampled Gaussian per round; equal rounds compose as one."""
    if not noise_multipliers:
        return 0.0
    accountant = dp_accounting.rdp.RdpAccountant()
    values, counts = np.unique(np.asarray(noise_multipliers, np.float64), return_counts=True)
    for sigma, count in zip(values, counts):
        accountant.compose(_rounds(sampling_rate, float(sigma), int(count)))
    return float(accountant.get_epsilon(delta))


def local_epsilon(noise_multiplier: float, releases: int, delta: float) -> float:
    """ε of a user whose device released its clipped, noised update ``releases`` times (the
    Gaussian mechanism composed, no amplification: the server sees who uploaded)."""
    if releases == 0:
        return 0.0
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(noise_multiplier), releases))
    return float(accountant.get_epsilon(delta))


@dataclass(frozen=True)
class Budget:
    """What a Poisson-sampled Gaussian run is accounted with: each client's chance q to be drawn in
    a round, the guarantee's δ, and the noise multiplier σ."""

    sampling_rate: float
    delta: float
    noise_multiplier: float


def plan_budget(cfg: CentralDP, n_clients: int, n_eligible: int, n_select: int, rounds: int) -> Budget:
    """q = ``n_select`` / ``n_eligible``, δ as configured (default 1 / (10 × ``n_clients``)), and σ
    as configured or solved for the target ε over ``rounds``."""
    sampling_rate = min(1.0, n_select / n_eligible)
    delta = cfg.delta if cfg.delta is not None else 1.0 / (10 * n_clients)
    if cfg.noise_multiplier is not None:
        return Budget(sampling_rate, delta, cfg.noise_multiplier)
    assert cfg.target_epsilon is not None  # the config holds exactly one of the two
    return Budget(sampling_rate, delta, noise_for_epsilon(sampling_rate, cfg.target_epsilon, rounds, delta))
