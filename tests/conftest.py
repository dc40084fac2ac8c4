"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Ray 2.60 enables token authentication, but its job-submission client only sends the token
# when RAY_AUTH_MODE=token is set before Ray is imported (checked on this machine).
os.environ.setdefault("RAY_AUTH_MODE", "token")

REPO_ROOT = Path(__file__).resolve().parents[1]
ML100K_DEFAULT = REPO_ROOT.parent / "shared" / "datasets" / "ml-100k"


def _ml100k_path() -> Path:
    return Path(os.environ.get("FAIRFLEET_ML100K", ML100K_DEFAULT))


@pytest.fixture(scope="session")
def ml100k_path() -> Path:
    """The real MovieLens 100K folder: skipped when absent, a failure under FAIRFLEET_REQUIRE_DATA=1."""
    path = _ml100k_path()
    if not (path / "u.data").exists():
        reason = f"MovieLens 100K not found at {path} (set FAIRFLEET_ML100K to its folder)"
        if os.environ.get("FAIRFLEET_REQUIRE_DATA") == "1":
            pytest.fail(reason + " and FAIRFLEET_REQUIRE_DATA=1")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def ml100k(ml100k_path):
    from cluster.data.movielens import load_movielens

    return load_movielens(ml100k_path)


@pytest.fixture(scope="session")
def ray_session():
    """The one Ray session of the test run (started on first use): its metrics export port."""
    import ray

    from tests.ray_session import start_ray_session

    port = start_ray_session()
    yield port
    ray.shutdown()


@pytest.fixture(scope="session")
def serve_port(ray_session):
    """Ray Serve on loopback and a free port, inside the shared Ray session."""
    from ray import serve

    from cluster.ports import free_port

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield port
    serve.shutdown()


@pytest.fixture(scope="session")
def s3_server():
    """An S3-compatible server (moto) on a free loopback port; yields make_bucket(name) -> the
    bucket's storage URI. The credentials travel in the URI, so every Ray worker — whenever the
    shared session started — reaches the bucket without environment set up for it."""
    import boto3
    from moto.server import ThreadedMotoServer

    from cluster.ports import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=f"http://{endpoint}", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")

    def make_bucket(name: str) -> str:
        client.create_bucket(Bucket=name)
        return f"s3://testing:testing@{name}?endpoint_override={endpoint}&scheme=http&region=us-east-1"

    yield make_bucket
    server.stop()
