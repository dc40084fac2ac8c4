"""The server side of FL runs without torch: the aggregator actor, what it unpickles (the model
families' ops, the fleet, the configs) and the round loop import none, and a server given w⁰
runs rounds without drawing it. A torch import costs seconds of CPU and a few hundred MB per
process; only the client workers train."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

SERVER_MODULES = ("actors.aggregator", "actors.worker_pool", "actors.round_metrics", "cluster.fl.families.base", "cluster.fl.families.ncf.ops",
                  "cluster.fl.families.click.ops", "cluster.fl.families.ncf.model", "cluster.fl.families.click.model",
                  "cluster.fl.strategies.cali3f.server", "cluster.fl.strategies.cali3f.device", "cluster.fairness.ceag_round")

PROBE = f"""
import sys
for name in {SERVER_MODULES!r}:
    __import__(name)
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
print("torch loaded:", loaded[:3])
sys.exit(1 if loaded else 0)
"""


def test_the_aggregator_and_what_it_unpickles_import_no_torch():
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_server_given_w0_unpickles_its_arguments_and_plans_rounds_without_torch(tmp_path):
    """What the driver sends the aggregator actor (config, ops, fleet, w⁰), unpickled in a fresh
    process that then builds the server (Cali3F: K-means on metadata) and plans a round."""
    import pickle

    from cluster.fl.experiment import build
    from configs import load_config

    cfg = load_config("configs/demo.yaml", ["data.synthetic.n_users=120", "data.synthetic.n_items=100",
                                            "data.synthetic.target_interactions=2000", "data.n_negatives=20", "fl.strategy=cali3f",
                                            "fl.strategy.n_clusters=3", f"data.cache_dir={tmp_path / 'cache'}"])
    exp = build(cfg)
    sent = tmp_path / "sent.pkl"
    sent.write_bytes(pickle.dumps((cfg.fl, exp.ops, exp.fleet, cfg.seed, exp.ops.init_params(cfg.seed))))
    probe = f"""
import pickle, sys
fl, ops, fleet, seed, initial = pickle.loads(open({str(sent)!r}, "rb").read())
from cluster.fl.server_core import FederatedServer
server = FederatedServer(fl, ops, fleet, seed, initial)
plan = server.plan_round()
assert len(plan.selected) > 0
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
sys.exit(f"the server imported torch: {{loaded[:3]}}" if loaded else 0)
"""
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
