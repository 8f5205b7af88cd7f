"""Fixtures shared by the unit and integration tests, and the hypothesis settings they run with.

Helper modules (not test modules) hold the rest: tests/cluster_data.py (the example cluster as
records), tests/doubles.py (pipelines and a socket-free forwarder), tests/integration/server.py (the server
process), tests/integration/upstream.py (real and stand-in upstream resolvers),
tests/kube_api_standin.py (the Kubernetes API).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.cluster_data import ZONES
from tests.integration.upstream import Unbound

# No per-example deadline: on a loaded two-core CI machine an example's duration says nothing about
# the code.  Examples are drawn from a fixed seed, so a failure in CI is the same failure locally.
settings.register_profile("ci", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")

# Every server process the tests start runs one worker unless the test asks for more (`--workers`):
# the default would be the machine's CPUs (dns_server.serving.cpus reads GOMAXPROCS first, as Go does).
os.environ.setdefault("GOMAXPROCS", "1")


@pytest.fixture
def zones_copy(tmp_path: Path) -> Path:
    """A writable copy of the bundled zones/ example cluster."""
    directory = tmp_path / "zones"
    directory.mkdir()
    for path in ZONES.glob("*.yaml"):
        shutil.copy(path, directory / path.name)
    return directory


@pytest.fixture(scope="session")
def unbound(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unbound]:
    """The real unbound daemon serving the test zones, shared by every test that only asks it.

    Tests that stop or reconfigure an upstream start an Unbound of their own.
    """
    with Unbound(tmp_path_factory.mktemp("unbound")) as running:
        yield running
