"""musl's resolver as the client: what Alpine-based pods (and many static binaries) get from us.

Real parts: the server runs as its own process (`python -m dns_server`) on the bundled zones/
example cluster plus a headless service of 40 ready endpoints; the client is musl libc's own
`getaddrinfo`, in a small C program linked statically with `musl-gcc` at test time.  musl's stub
resolver (1.2.3 and earlier: Alpine 3.17 and earlier) sends no EDNS, so it takes at most 512 bytes
over UDP, and never retries over TCP: a truncated reply is all it gets (musl 1.2.4 added the TCP
retry).

musl reads only /etc/resolv.conf and always uses port 53, so each lookup runs in a private mount
namespace (`unshare --mount`, which needs root) where a pod-style resolv.conf is bind-mounted over
/etc/resolv.conf, and the server listens on port 53 of a loopback address of its own
(127.53.x.y), which no other service of the machine uses.  Nothing outside the namespace sees
the mount.  Without `musl-gcc` (Debian: musl-tools), `unshare` or root, the tests are skipped.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from tests.cluster_data import ZONES, headless_manifest
from tests.integration.server import ServerProcess

Z = "cluster.local"
DNS_PORT = 53  # musl's resolver has no way to use another
ENDPOINTS = 40
LOOKUP_DEADLINE = 20.0  # musl: 2 attempts within `timeout:` 5 s by default; an answered lookup is immediate

LOOKUP_C = r"""
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* getaddrinfo(name, IPv4, datagram) as an application would call it: one address a line, or the error. */
int main(int argc, char **argv) {
    struct addrinfo hints, *result, *ai;
    char text[INET_ADDRSTRLEN];
    int rc;

    if (argc != 2) {
        fprintf(stderr, "usage: %s NAME\n", argv[0]);
        return 64;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_DGRAM;
    rc = getaddrinfo(argv[1], NULL, &hints, &result);
    if (rc != 0) {
        printf("error: %s\n", gai_strerror(rc));
        return 2;
    }
    for (ai = result; ai != NULL; ai = ai->ai_next) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, text, sizeof text);
        printf("%s\n", text);
    }
    freeaddrinfo(result);
    return 0;
}
"""


def private_mounts_work() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
    return probe.returncode == 0


def loopback_address_with_port_53_free() -> str:
    """A 127.53.x.y address on which nothing listens on port 53, UDP or TCP."""
    rng = random.Random()
    for _ in range(50):
        address = f"127.53.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
                    socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                udp.bind((address, DNS_PORT))
                tcp.bind((address, DNS_PORT))
        except OSError:
            continue
        return address
    raise AssertionError("no loopback address with port 53 free")


@pytest.fixture(scope="module")
def lookup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("musl-gcc") is None:
        pytest.skip("musl-gcc is missing (Debian package musl-tools)")
    if not private_mounts_work():
        pytest.skip("needs root and unshare for a private mount namespace (musl reads only /etc/resolv.conf)")
    directory = tmp_path_factory.mktemp("musl")
    (directory / "lookup.c").write_text(LOOKUP_C)
    subprocess.run(["musl-gcc", "-static", "-O2", "-Wall", "-Werror", "-o", "lookup", "lookup.c"],
                   cwd=directory, check=True, capture_output=True)
    return directory / "lookup"


@pytest.fixture(scope="module")
def server(lookup: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    fixtures = tmp_path_factory.mktemp("cluster")
    for path in ZONES.glob("*.yaml"):
        shutil.copy(path, fixtures / path.name)
    (fixtures / "big.yaml").write_text(yaml.safe_dump_all(headless_manifest("many", "big", ENDPOINTS)))
    # no upstreams (an empty resolv.conf of its own): nothing leaves this machine
    with ServerProcess("--fixtures", str(fixtures), "--resolv-conf", "/dev/null",
                       host=loopback_address_with_port_53_free(), port=DNS_PORT) as running:
        yield running


def musl_lookup(lookup: Path, server: ServerProcess, name: str, namespace: str, directory: Path) -> list[str]:
    """What `getaddrinfo(name)` gives in a pod of `namespace` whose nameserver is `server`."""
    resolv_conf = directory / f"resolv.conf.{namespace}"
    resolv_conf.write_text(f"nameserver {server.host}\n"
                           f"search {namespace}.svc.{Z} svc.{Z} {Z}\n"
                           "options ndots:5\n")  # what the kubelet writes for a ClusterFirst pod
    script = 'mount --bind "$1" /etc/resolv.conf && exec "$2" "$3"'
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                           str(resolv_conf), str(lookup), name],
                          capture_output=True, text=True, timeout=LOOKUP_DEADLINE)
    assert done.returncode in (0, 2), f"lookup failed to run: {done.stderr}"
    return done.stdout.split("\n")[:-1]


def test_a_clusterip_service_by_its_full_name(lookup: Path, server: ServerProcess, tmp_path: Path) -> None:
    assert musl_lookup(lookup, server, f"frontend.shop.svc.{Z}.", "default", tmp_path) == ["10.96.10.20"]


@pytest.mark.parametrize("name, namespace", [("frontend", "shop"), ("frontend.shop", "data")])
def test_short_names_through_the_search_path(lookup: Path, server: ServerProcess, tmp_path: Path,
                                             name: str, namespace: str) -> None:
    """`frontend` from its own namespace; `frontend.shop` from another, after a first search-domain miss."""
    assert musl_lookup(lookup, server, name, namespace, tmp_path) == ["10.96.10.20"]


def test_a_headless_service_too_big_for_512_bytes_gives_what_fits(lookup: Path, server: ServerProcess,
                                                                  tmp_path: Path) -> None:
    """40 addresses take 684 bytes; the 29 that fit in 512 must come back, not "no usable address".

    A musl that retries over TCP (1.2.4 and later) gets all 40.
    """
    addresses = musl_lookup(lookup, server, f"many.big.svc.{Z}.", "default", tmp_path)
    every = {f"10.200.0.{i}" for i in range(1, ENDPOINTS + 1)}
    question = len(f"many.big.svc.{Z}") + 2 + 4
    fitting = (512 - 12 - question) // 16  # 12-byte header; 16 bytes an A record whose owner points at the question
    assert len(addresses) in (fitting, ENDPOINTS) and set(addresses) <= every, addresses


def test_a_missing_name_does_not_resolve(lookup: Path, server: ServerProcess, tmp_path: Path) -> None:
    assert musl_lookup(lookup, server, f"nope.shop.svc.{Z}.", "default", tmp_path) == \
        ["error: Name does not resolve"]
