import pytest


@pytest.fixture(scope="session")
def ray_session():
    """(metrics export port) of the shared Ray session; shut down at the end of the tests."""
    import ray

    from tests.ray_session import start_ray_session

    port = start_ray_session()
    yield port
    ray.shutdown()
