"""Build the fair-retriever application from a FairFleet config.

serve run configs/serve/retriever_synthetic.yaml        # Serve config: import_path serve.app:build_app
serve.run(build_app({"config": "configs/retrieval_skewed.yaml"}))   # from Python
"""

from __future__ import annotations

from ray.serve import Application

from configs import load_config
from serve.retriever import FairRetriever


def build_app(args: dict) -> Application:
    """args = {config: path to a FairFleet YAML, overrides: [KEY=VALUE, ...]} (the Serve
    config's ``args``); a bad config fails here, before anything is deployed."""
    unknown = set(args) - {"config", "overrides"}
    if unknown or "config" not in args:
        raise ValueError(f"fair-retriever args take 'config' (required) and 'overrides'; got {sorted(args)}")
    cfg = load_config(args["config"], list(args.get("overrides") or []))
    # @serve.deployment turns the class into a Deployment, but mypy keeps a decorated class's own type.
    return FairRetriever.bind(cfg)  # type: ignore[attr-defined]
