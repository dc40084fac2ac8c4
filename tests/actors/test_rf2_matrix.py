"""jobs/rf2_matrix.py on Ray: cells as tasks, the files it writes, resuming (finished cells are
skipped), and a cell equal to an actor run of the same config."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jobs.fl_sim import build_run_write
from jobs.rf2_matrix import cell_config, main

pytestmark = pytest.mark.usefixtures("ray_session")

BASE = ["data.synthetic.n_users=240", "data.synthetic.n_items=300", "data.synthetic.target_interactions=6000",
        "model.kind=dlrm", "model.top_hidden=[32]", "model.history_len=20", "fl.overselect=0", "fl.rounds=2",
        "fl.clients_per_round=40", "fl.client_lr=1.0", "fl.server_optimizer=adagrad", "fl.server_lr=0.1"]


def _argv(tmp_path: Path, out: Path) -> list[str]:
    sets = [arg for item in [*BASE, f"data.cache_dir={tmp_path / 'cache'}", f"storage={tmp_path / 'runs'}"]
            for arg in ("--set", item)]
    return ["--config", "configs/demo.yaml", *sets, "--configurations", "quants-1:4:16", "exclude-lo",
            "--mappings", "random", "hetero-vhigh", "--out", str(out)]


def test_matrix_writes_resumes_and_matches_an_actor_run(tmp_path: Path):
    out, page = tmp_path / "matrix", tmp_path / "docs" / "rf2-matrix-dlrm.md"
    assert main([*_argv(tmp_path, out), "--report", str(page)]) == 0
    cells = sorted(p for p in (out / "cells").glob("*.parquet") if not p.name.endswith(".rounds.parquet"))
    assert len(cells) == 6  # 2 mappings x (none + 2 configurations)
    assert all(p.with_suffix(".rounds.parquet").exists() for p in cells)
    for name in ("cells.parquet", "measures.parquet", "matrix.md", "mdac.png", "tier_change_hetero-vhigh.png"):
        assert (out / name).stat().st_size > 0, name
    measures = pq.read_table(out / "measures.parquet").to_pandas().set_index(["mapping", "configuration"])
    assert measures.loc[("random", "none"), "mdac"] == 0.0
    assert measures.loc[("random", "none"), "max_psi_pair_train"] == 0.0  # ψ of the reference against itself
    assert measures.loc[("hetero-vhigh", "exclude-lo"), "max_psi_pair_train"] > 0.0
    assert measures.loc[("hetero-vhigh", "exclude-lo"), "speedup"] > 1.0
    assert "| exclude-lo |" in (out / "matrix.md").read_text()
    from tests.actors.test_job_commands import assert_page

    text = assert_page(page, "rf2_matrix", ("mdac.png", "tier_change_hetero-vhigh.png"))
    assert text.startswith("# RF²'s matrix: DLRM on synthetic, 240 users × 300 items")
    assert "## MDAC per configuration and tier mapping" in text and "## Per tier under hetero-vhigh" in text
    assert "| exclude-lo | " in text and "one seed" in text and "Simulated speed-ups under hetero-vhigh" in text

    # Resume: one cell lost, only it runs again; the others are read back untouched.
    lost = cells[0]
    kept_times = {p: p.stat().st_mtime_ns for p in cells[1:]}
    lost.unlink()
    assert main(_argv(tmp_path, out)) == 0
    assert lost.exists() and all(p.stat().st_mtime_ns == t for p, t in kept_times.items())

    # A cell is the aggregator's round loop in one process: the same AUC as fl_sim on actors.
    from configs import load_config

    base = load_config("configs/demo.yaml", [*BASE, f"data.cache_dir={tmp_path / 'cache'}",
                                             f"storage={tmp_path / 'runs'}"])
    cfg = cell_config(base, "hetero-vhigh", "quants-1:4:16", 0)
    _, run_dir, _ = build_run_write(cfg, quiet=True)
    run_dir = run_dir.local_path  # a local storage: read its files directly
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = pq.read_table(out / "cells.parquet").to_pandas()
    cell = rows[(rows["mapping"] == "hetero-vhigh") & (rows["configuration"] == "quants-1:4:16")].set_index("tier")
    for tier in ("low", "mid", "high"):
        assert cell.loc[tier, "auc"] == summary["final"][f"auc_{tier}"], tier
    assert cell.loc["all", "auc_train"] == summary["final_train"]["auc_train"]
    assert cell.loc["all", "sim_time_s"] == pytest.approx(summary["sim_time_s"], rel=1e-12)


def test_an_ncf_matrix_compares_cells_by_hr10(tmp_path: Path):
    out, page = tmp_path / "matrix", tmp_path / "neumf.md"
    argv = [arg if arg != "model.kind=dlrm" else "model.kind=neumf" for arg in _argv(tmp_path, out)]
    argv = [*argv[: argv.index("--configurations")], "--set", "model.mlp_layers=[16,8]", "--configurations",
            "channel-1:4:16", "--mappings", "hetero-vhigh", "--out", str(out), "--report", str(page)]
    assert main(argv) == 0
    measures = pq.read_table(out / "measures.parquet").to_pandas().set_index("configuration")
    assert 0.0 <= measures.loc["channel-1:4:16", "hr10"] <= 1.0 and "auc" not in measures.columns
    text = page.read_text()
    assert "| configuration | HR@10 |" in text and "MDAC train" not in text


def test_matrix_refuses_a_base_overselect(tmp_path: Path, capsys):
    argv = _argv(tmp_path, tmp_path / "m")
    assert main([*argv, "--set", "fl.overselect=0.2"]) == 2
    assert "fl.overselect must be 0" in capsys.readouterr().err
