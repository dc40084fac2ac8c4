"""jobs/secure_cost.py: the clock alone prices plain, SecAgg and SecAgg+ uploads per tier; under
secure aggregation a compressing optimization uploads what no optimization does. No Ray."""

from pathlib import Path

import numpy as np

from configs import load_config
from jobs.secure_cost import main, price, settings

SMALL = ["data.synthetic.n_users=240", "data.synthetic.n_items=200", "data.synthetic.target_interactions=6000",
         "model.kind=gmf", "model.embedding_dim=8", "fl.clients_per_round=40", "fl.overselect=0"]


def test_secure_uploads_have_one_shape_whatever_the_compression_and_cost_more_than_plain(tmp_path: Path):
    base = load_config("configs/demo.yaml", [*SMALL, f"data.cache_dir={tmp_path / 'cache'}"])
    compared = settings(base, neighbours=4)
    plain = price(base, "plain (dense)", compared["plain (dense)"], "none", rounds=5)
    secure = price(base, "SecAgg", compared["SecAgg"], "none", rounds=5)
    pruned = price(base, "SecAgg", compared["SecAgg"], "prune-1:4:16", rounds=5)
    sparse = price(base, "SecAgg+ (k=4)", compared["SecAgg+ (k=4)"], "none", rounds=5)
    assert (secure.tier_latency_s > plain.tier_latency_s).all() and (secure.tier_upload_mb > plain.tier_upload_mb).all()
    np.testing.assert_allclose(pruned.tier_upload_mb, secure.tier_upload_mb)
    assert (sparse.tier_upload_mb < secure.tier_upload_mb).all(), "fewer neighbours, fewer shares"


def test_the_job_writes_its_page_and_refuses_bad_input(tmp_path: Path):
    sets = [arg for item in (*SMALL, f"data.cache_dir={tmp_path / 'cache'}") for arg in ("--set", item)]
    page = tmp_path / "secure-cost.md"
    assert main(["--config", "configs/demo.yaml", *sets, "--rounds", "3", "--optimizations", "none",
                 "--report", str(page)]) == 0
    text = page.read_text()
    assert "SecAgg+ (k=8)" in text and "| command |" in text
    assert main(["--config", "configs/demo.yaml", *sets, "--neighbours", "3"]) == 2
    assert main(["--config", "configs/demo.yaml", *sets, "--optimizations", "squash"]) == 2
