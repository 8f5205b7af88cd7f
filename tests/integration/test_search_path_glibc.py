"""autopath against a real glibc resolver: the queries a pod's getaddrinfo sends, counted by the server.

Runs bench/search_path.py, which puts `getent ahosts` (glibc 2.36's getaddrinfo, A and AAAA) in a
private network namespace whose address is a pod's in the fixtures, with a pod's resolv.conf
(`ndots:5`, three search domains), and the server (and unbound, the upstream) in another; it counts
`coredns_dns_requests_total` around each lookup, with and without autopath.  Skipped where network
namespaces cannot be made (not root, no `ip`).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration.server import REPO

CANNOT_MAKE_NAMESPACES = 3  # bench/search_path.py's exit status


def test_autopath_cuts_the_queries_of_names_glibc_searches_for() -> None:
    run = subprocess.run([sys.executable, str(REPO / "bench" / "search_path.py"), "--json"], capture_output=True,
                         text=True, cwd=REPO, timeout=240)
    if run.returncode == CANNOT_MAKE_NAMESPACES:
        pytest.skip(run.stderr.strip())
    assert run.returncode == 0, run.stderr
    counts = {name: tuple(pair) for name, pair in json.loads(run.stdout).items()}
    assert counts["api.example.com"] == (8, 2)  # three search domains x (A, AAAA), then the name: one try
    assert counts["frontend.shop"] == (4, 2)  # the pod's own namespace first, then svc.cluster.local
    assert counts["kubernetes"] == (2, 2)  # found at the first try either way
    assert counts["kubernetes.default.svc.cluster.local."] == (2, 2)  # fully qualified: never searched
