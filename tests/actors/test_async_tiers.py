"""jobs/async_tiers.py at a small scale: synchronous cells, then asynchronous ones trained to the
synchronous run's simulated time, the page with who is heard and the mitigation's cuts, and bad
input refused."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from jobs.async_tiers import main

pytestmark = pytest.mark.usefixtures("ray_session")

SMALL = ["fl.rounds=3", "fl.clients_per_round=40", "data.synthetic.n_users=240", "data.synthetic.n_items=200",
         "data.synthetic.target_interactions=6000", "model.embedding_dim=8", "fl.eval_every=3"]


def test_the_arms_train_for_equal_simulated_time_and_the_page_says_who_is_heard(tmp_path: Path):
    sets = [arg for item in (*SMALL, f"data.cache_dir={tmp_path / 'cache'}") for arg in ("--set", item)]
    page = tmp_path / "async.md"
    assert main(["--config", "configs/demo.yaml", *sets, "--seeds", "0", "--out", str(tmp_path / "out"),
                 "--report", str(page)]) == 0
    cells = pd.read_parquet(tmp_path / "out" / "cells.parquet")
    total = cells[cells["tier"] == "all"].set_index("configuration")
    assert set(total.index) == {"none", "async", "async-tier-staleness"}
    budget = total.loc["none", "sim_time_s"]
    assert (total.loc[["async", "async-tier-staleness"], "sim_time_s"] >= budget).all()
    assert (total.loc[["async", "async-tier-staleness"], "steps"] > 3).all()
    text = page.read_text()
    assert "Who is heard" in text and "weight skew cut" in text
    assert main(["--config", "configs/demo.yaml", *sets, "--overselect", "-1"]) == 2


def test_check_exits_3_exactly_when_the_page_says_a_goal_was_missed():
    from jobs.async_tiers import goals

    def summary(weight_skew: float, mdac: float) -> pd.DataFrame:
        plain = {"configuration": "async", "weight_skew": 3.0, "update_skew": 1.05, "mdac": 0.2, "seeds": 3}
        mitigated = {**plain, "configuration": "async-tier-staleness", "weight_skew": weight_skew, "mdac": mdac}
        return pd.DataFrame([plain, mitigated])

    assert goals(summary(1.5, 0.1))[1] == []  # skew excess 2 → 0.5 (75 % cut), MDAC 50 % cut
    assert goals(summary(2.5, 0.1))[1] == ["weight skew cut"]  # a 25 % cut
    assert goals(summary(1.5, 0.15))[1] == ["MDAC cut"]  # a 25 % cut
    lines = goals(summary(2.5, 0.15))[0]
    assert sum("missed" in line for line in lines) == 2
