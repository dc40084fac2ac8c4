import numpy as np
import pytest

from configs import load_config
from cluster.tiers.latency import RoundWork, TierTable, sample_round_latency


def _table(std: float = 0.0) -> TierTable:
    cfg = load_config(None, [f"tiers.profiles.{t}.{f}.std={std}" for t in range(3) for f in
                             ("compute_s_per_sample", "download_mbps", "upload_mbps")])
    return TierTable.from_config(cfg.tiers)


def test_deterministic_profile_gives_exact_seconds():
    table = _table()
    work = RoundWork(np.array([100, 100]), model_bytes=1e6, upload_bytes=5e5, local_epochs=2)
    lat = sample_round_latency(table, np.array([0, 2]), work, rng=np.random.default_rng(0))
    assert lat.compute_s.tolist() == pytest.approx([100 * 2 * 0.010, 100 * 2 * 0.002])
    assert lat.download_s.tolist() == pytest.approx([8e6 / 2e6, 8e6 / 100e6])
    assert lat.upload_s.tolist() == pytest.approx([4e6 / 0.5e6, 4e6 / 50e6])
    assert np.allclose(lat.total_s, lat.compute_s + lat.download_s + lat.upload_s)


def test_model_fraction_and_compression_speed_up():
    table = _table()
    args = dict(tiers=np.array([0]), rng=np.random.default_rng(0))
    full = sample_round_latency(table, work=RoundWork(np.array([50]), model_bytes=1e6, upload_bytes=1e6), **args)
    narrow = sample_round_latency(table, work=RoundWork(np.array([50]), model_bytes=1e6, upload_bytes=1e6 / 8,
                                                        model_fraction=0.25), **args)
    assert narrow.compute_s[0] == pytest.approx(full.compute_s[0] / 4)
    assert narrow.download_s[0] == pytest.approx(full.download_s[0] / 4)
    assert narrow.upload_s[0] == pytest.approx(full.upload_s[0] / 8)


def test_low_end_is_slower_and_draws_are_floored():
    table = TierTable.from_config(load_config(None).tiers)
    tiers = np.repeat([0, 1, 2], 2000)
    lat = sample_round_latency(table, tiers, RoundWork(np.full(6000, 50), 2e5, 2e5), np.random.default_rng(0))
    mean = [lat.total_s[tiers == t].mean() for t in range(3)]
    assert mean[0] > mean[1] > mean[2]
    wild = _table(std=100.0)
    lat = sample_round_latency(wild, tiers, RoundWork(np.full(6000, 50), 2e5, 2e5), np.random.default_rng(0))
    assert (lat.compute_s >= 50 * 0.1 * wild.compute_mean[tiers] - 1e-12).all()
    assert np.isfinite(lat.total_s).all() and (lat.total_s > 0).all()


def test_rejects_bad_tiers():
    with pytest.raises(ValueError, match="tier ids"):
        sample_round_latency(_table(), np.array([3]), RoundWork(np.array([1]), 1.0, 1.0), np.random.default_rng(0))
