"""jobs/dp_tiers.py on Ray: GMF on MovieLens 100K without DP and under central DP, the files and
page it writes, per-tier rows for every cell, ε within its target, a refused combination
reported instead of run, and bad input refused before any cell runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jobs.dp_tiers import main

pytestmark = pytest.mark.usefixtures("ray_session")

TIERS = ("low", "mid", "high", "all")


def _argv(tmp_path: Path, ml100k_path: Path, *extra: str) -> list[str]:
    sets = [f"data.path={ml100k_path}", f"data.cache_dir={tmp_path / 'cache'}", f"storage={tmp_path / 'runs'}",
            "fl.rounds=2", "fl.clients_per_round=10", "data.n_negatives=19"]
    return ["--config", "configs/ml100k.yaml", *[a for s in sets for a in ("--set", s)], "--seeds", "0",
            "--epsilons", "8", *extra]


def test_dp_tiers_writes_per_tier_rows_within_the_target_epsilon(tmp_path: Path, ml100k_path: Path, capsys):
    out, page = tmp_path / "dp", tmp_path / "docs" / "dp-tiers-gmf.md"
    # GMF has no hidden layer to narrow: channel-1:4:16 is refused by the schema and must be
    # reported, not crash the job.
    code = main([*_argv(tmp_path, ml100k_path), "--configurations", "none", "exclude-lo", "channel-1:4:16",
                 "--out", str(out), "--report", str(page)])
    printed = capsys.readouterr()
    assert code == 0, printed.err[-2000:]
    for name in ("cells.parquet", "rounds.parquet", "measures.parquet", "dp_cost.parquet", "refused.parquet",
                 "dp_tiers.md", "mdac.png", "dp_cost.png"):
        assert (out / name).stat().st_size > 0, name

    cells = pd.read_parquet(out / "cells.parquet")
    assert set(cells["metric"]) == {"hr10"}
    for (configuration, privacy), part in cells.groupby(["configuration", "privacy"]):
        assert sorted(part["tier"]) == sorted(TIERS), (configuration, privacy)
        assert part["hr10"].between(0, 1).all()
    assert set(map(tuple, cells[["configuration", "privacy"]].drop_duplicates().to_numpy())) == {
        ("none", "none"), ("none", "eps8"), ("exclude-lo", "none"), ("exclude-lo", "eps8")}
    private, plain = cells[cells["privacy"] == "eps8"], cells[cells["privacy"] == "none"]
    assert (private["target_epsilon"] == 8).all() and plain["target_epsilon"].isna().all()
    assert ((private["dp_epsilon"] > 0) & (private["dp_epsilon"] <= 8 + 1e-9)).all()
    assert private["dp_clipped"].between(0, 1).all() and (private["dp_noise_multiplier"] > 0).all()
    assert plain[["dp_epsilon", "dp_clipped", "dp_noise_multiplier"]].isna().all().all()

    refused = pd.read_parquet(out / "refused.parquet")
    assert set(refused["configuration"]) == {"channel-1:4:16"} and set(refused["privacy"]) == {"none", "eps8"}
    assert refused["reason"].str.contains("GMF has no hidden layer").all()

    measures = pd.read_parquet(out / "measures.parquet").set_index(["privacy", "configuration"])
    assert measures.loc[("none", "none"), "mdac"] == 0.0 and measures.loc[("eps8", "none"), "mdac"] == 0.0
    assert np.isfinite(measures.loc[("eps8", "exclude-lo"), "mdac"])
    cost = pd.read_parquet(out / "dp_cost.parquet")
    assert set(map(tuple, cost[["configuration", "privacy"]].to_numpy())) == {("none", "eps8"), ("exclude-lo", "eps8")}

    table = (out / "dp_tiers.md").read_text()
    assert "| ε = 8 | exclude-lo |" in table and "| no DP | channel-1:4:16 | refused (reason below) |" in table
    from tests.actors.test_job_commands import assert_page

    text = assert_page(page, "dp_tiers", ("mdac.png", "dp_cost.png"))
    assert text.startswith("# What differential privacy costs each tier: GMF on MovieLens 100K, hetero-vhigh")
    assert "## DP's own cost per tier" in text and "## Do the mitigations still cut MDAC under DP?" in text
    assert "## Refused cells" in text and "HR@10 low" in text


def test_dp_tiers_refuses_bad_input(tmp_path: Path, ml100k_path: Path, capsys):
    out = ["--out", str(tmp_path / "never")]
    assert main([*_argv(tmp_path, ml100k_path), "--configurations", "prune-1:5", *out]) == 2
    assert "unknown configuration(s) ['prune-1:5']" in capsys.readouterr().err
    private = ["--set", "fl.privacy={kind: central_dp, noise_multiplier: 1.0}"]
    assert main([*_argv(tmp_path, ml100k_path), *private, *out]) == 2
    assert "sets fl.privacy" in capsys.readouterr().err
    assert main([*_argv(tmp_path, ml100k_path), "--set", "fl.overselect=0.2", *out]) == 2
    assert "fl.overselect must be 0" in capsys.readouterr().err
    assert main([*_argv(tmp_path, ml100k_path), "--epsilons", "0", *out]) == 2
    assert "--epsilons must all be > 0" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()
