import os

import pytest


@pytest.fixture(scope="session")
def ray_executor():
    """One local Ray (2 CPUs, no dashboard, usage stats off) for every Ray test."""
    ray = pytest.importorskip("ray")
    from thresher.pipeline.executors import make_executor

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    executor = make_executor({"name": "ray", "num_cpus": 2})
    executor.ray  # noqa: B018 - start it once
    yield executor
    ray.shutdown()
