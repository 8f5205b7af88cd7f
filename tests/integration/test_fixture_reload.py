"""Fixture files changed while the real server runs: picked up, never a gap in answers, a new SOA serial.

Real parts: the server process (`python -m dns_server --fixtures DIR`), files written the way real
tools write them (in place and in pieces, half-written, a ConfigMap volume's `..data` symlink swap),
and dnspython asking continuously from another thread while they change.  The README promises a
change is served within 2 s; these tests wait far longer before failing (a loaded machine is slow)
and check what happened, never how fast.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from pathlib import Path
from typing import Iterator

import dns.message
import dns.rcode
import pytest

from tests.integration.server import ServerProcess, wait_for

Z = "cluster.local"
RELOAD_WAIT = 15.0  # generous: the poll thread shares a loaded machine with the server and the test
COUNT = 10


def services(namespace: str, version: int) -> str:
    return "".join(f"""---
apiVersion: v1
kind: Service
metadata: {{name: svc-{i}, namespace: {namespace}}}
spec: {{clusterIP: 10.{50 + version}.0.{i + 1}, ports: [{{name: http, port: 80, protocol: TCP}}]}}
""" for i in range(COUNT))


class Watcher:
    """Asks for every service over and over; records any answer outside the allowed versions.

    A query that gets no reply at all is a gap too: it ends the thread with the error recorded.
    """

    def __init__(self, server: ServerProcess, namespace: str) -> None:
        self.server = server
        self.namespace = namespace
        self.allowed = {1}
        self.bad: list[str] = []
        self.asked = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self._watch()
        except Exception:
            self.bad.append(traceback.format_exc())

    def _watch(self) -> None:
        while not self.stop.is_set():
            for i in range(COUNT):
                allowed = set(self.allowed)
                name = f"svc-{i}.{self.namespace}.svc.{Z}"
                reply = self.server.udp(dns.message.make_query(name, "A"))
                self.asked += 1
                got = [rr.to_text() for rrset in reply.answer for rr in rrset]
                valid = {f"10.{50 + v}.0.{i + 1}" for v in allowed | set(self.allowed)}
                if reply.rcode() != dns.rcode.NOERROR or len(got) != 1 or got[0] not in valid:
                    self.bad.append(f"{name}: {dns.rcode.to_text(reply.rcode())} {got}")

    def serves(self, version: int) -> bool:
        replies = [self.server.udp(dns.message.make_query(f"svc-{i}.{self.namespace}.svc.{Z}", "A"))
                   for i in range(COUNT)]
        return all(r.answer and r.answer[0][0].to_text() == f"10.{50 + version}.0.{i + 1}"
                   for i, r in enumerate(replies))

    def switch(self, version: int) -> None:
        """Allow `version` too, wait until every name serves it, forbid the old one."""
        self.allowed = self.allowed | {version}
        wait_for(lambda: self.serves(version), RELOAD_WAIT, f"version {version} to be served")
        self.allowed = {version}

    def finish(self) -> None:
        self.stop.set()
        self.thread.join()


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[tuple[Path, ServerProcess]]:
    (tmp_path / "churn.yaml").write_text(services("churn", 1))
    volume = tmp_path / "configmap"
    (volume / "..2026_11_24_01_00_00.1").mkdir(parents=True)
    (volume / "..2026_11_24_01_00_00.1" / "mounted.yaml").write_text(services("mounted", 1))
    (volume / "..data").symlink_to("..2026_11_24_01_00_00.1")
    (volume / "mounted.yaml").symlink_to("..data/mounted.yaml")
    with ServerProcess("--fixtures", str(tmp_path), ready_name=f"svc-0.churn.svc.{Z}", ready_type="A") as server:
        yield tmp_path, server


def test_in_place_rewrites_and_half_written_files_never_leave_a_gap(cluster: tuple[Path, ServerProcess]) -> None:
    directory, server = cluster
    watcher = Watcher(server, "churn")
    watcher.thread.start()
    try:
        path = directory / "churn.yaml"
        text = services("churn", 2)
        with path.open("w") as handle:  # truncate, then write in pieces, as editors and `cat >` do
            for start in range(0, len(text), 64):
                handle.write(text[start:start + 64])
                handle.flush()
                time.sleep(0.02)  # a slow writer: the server must not read a partial file
        watcher.switch(2)

        path.write_text(services("churn", 3)[:300])  # half-written, and left that way for a while
        wait_for(lambda: f"{path}: cannot parse" in server.log(), RELOAD_WAIT, "the broken file to be reported")
        assert watcher.serves(2)  # the last good data is still served
        path.write_text(services("churn", 3))
        watcher.switch(3)
    finally:
        watcher.finish()
    assert watcher.asked > 50
    assert watcher.bad == []


def test_a_configmap_symlink_swap_never_leaves_a_gap(cluster: tuple[Path, ServerProcess]) -> None:
    directory, server = cluster
    volume = directory / "configmap"
    watcher = Watcher(server, "mounted")
    watcher.thread.start()
    try:
        # What the kubelet's atomic writer does: a new timestamped directory, then rename ..data over.
        new = volume / "..2026_11_24_01_05_00.2"
        new.mkdir()
        (new / "mounted.yaml").write_text(services("mounted", 2))
        (volume / "..data_tmp").symlink_to(new.name)
        os.replace(volume / "..data_tmp", volume / "..data")
        watcher.switch(2)
    finally:
        watcher.finish()
    assert watcher.asked > 20
    assert watcher.bad == []


def test_new_and_removed_files(cluster: tuple[Path, ServerProcess]) -> None:
    directory, server = cluster
    extra = directory / "extra.json"
    extra.write_text('{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "late", "namespace": "churn"},'
                     ' "spec": {"clusterIP": "10.60.0.1"}}')

    def rcode() -> int:
        return server.udp(dns.message.make_query(f"late.churn.svc.{Z}", "A")).rcode()

    wait_for(lambda: rcode() == dns.rcode.NOERROR, RELOAD_WAIT, "the new file to be served")
    extra.unlink()
    wait_for(lambda: rcode() == dns.rcode.NXDOMAIN, RELOAD_WAIT, "the removed file's service to go")


def test_the_soa_serial_increases_when_the_data_changes(cluster: tuple[Path, ServerProcess]) -> None:
    """The serial counts whole seconds (CoreDNS: the time of the last change), so the change is made
    more than a second after the first serial was read."""
    directory, server = cluster

    def serials() -> tuple[int, int]:
        """The serial of the apex SOA and of the SOA in a negative answer."""
        apex = server.udp(dns.message.make_query(Z, "SOA")).answer[0][0].serial
        negative = server.udp(dns.message.make_query(f"nope.churn.svc.{Z}", "A")).authority[0][0].serial
        return apex, negative

    before, negative = serials()
    assert negative == before
    time.sleep(1.1)  # into a later second than the serial read: a deliberate gap, not a wait for something
    (directory / "churn.yaml").write_text(services("churn", 2))
    wait_for(lambda: Watcher(server, "churn").serves(2), RELOAD_WAIT, "the change to be served")
    after, negative = serials()
    assert after > before and negative == after
