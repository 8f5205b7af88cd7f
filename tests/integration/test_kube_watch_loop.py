"""The list + watch loops under failures that take minutes with production timeouts.

Real parts: `KubeSource` runs in this process with the official `kubernetes` client, configured
from a generated kubeconfig, against the API stand-in (`tests/kube_api_standin.py`).  The watch
timeout, read-timeout margin, page size and backoff are shortened through the source's
constructor (they are not user settings), so a silent connection or a server-side timeout shows
within seconds.  The registry is the real one; assertions read its snapshots and the stand-in's
request log.  Every wait is a poll with a deadline.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from dns_server.cluster.records import ENDPOINT_SLICE, NAMESPACE, SERVICE
from dns_server.cluster.registry import Registry
from dns_server.cluster.snapshot import Snapshot
from dns_server.cluster.sources.kube import (
    Backoff,
    KubeSource,
    Phase,
    Resource,
    api_client,
)
from dns_server.plugins.kubernetes.setup import KubernetesSettings
from tests.integration.server import wait_for
from tests.kube_api_standin import (
    KubeApiStandIn,
    Request,
    endpoint_slice,
    namespace,
    service,
)

KINDS = (NAMESPACE, SERVICE, ENDPOINT_SLICE)
FAST_BACKOFF = Backoff(initial=0.1, cap=0.4)
CHANGE_WAIT = 15.0  # generous: a change in the API until the registry has it, on a loaded machine


@pytest.fixture
def api() -> Iterator[KubeApiStandIn]:
    standin = KubeApiStandIn(bookmark_interval=3600).start()
    standin.load([namespace("shop")] + [service("shop", f"svc-{i}", f"10.96.1.{i + 1}") for i in range(9)]
                 + [endpoint_slice("shop", "svc-0", ["10.244.0.1"])])
    yield standin
    standin.stop()


class Running:
    """A KubeSource feeding a registry, with every published snapshot recorded."""

    def __init__(self, api: KubeApiStandIn, tmp_path: Path, **options: object) -> None:
        self.registry = Registry(required_kinds=KINDS)
        self.snapshots: list[Snapshot] = []
        self.registry.subscribe(lambda snapshot, change: self.snapshots.append(snapshot))
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        client = api_client(KubernetesSettings(("cluster.local",), kubeconfig=kubeconfig).source)
        resources = [Resource(kind) for kind in KINDS]
        self.source = KubeSource(client, self.registry, resources, **options)  # type: ignore[arg-type]
        self.source.start()

    def has(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self.registry.snapshot.services

    def address(self, namespace: str, name: str) -> tuple[str, ...]:
        entry = self.registry.snapshot.services.get((namespace, name))
        return entry.service.cluster_ips if entry else ()


@pytest.fixture
def running(api: KubeApiStandIn, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Running]:
    options = getattr(request, "param", {})
    source = Running(api, tmp_path, **options)
    yield source
    source.source.stop()


def synced(running: Running) -> None:
    wait_for(lambda: running.registry.snapshot.synced, CHANGE_WAIT, "the first sync")


@pytest.mark.parametrize("running", [{"page_size": 2}], indirect=True)
def test_lists_are_paged_and_applied_as_one_replace(api: KubeApiStandIn, running: Running) -> None:
    synced(running)
    pages = api.lists("Service")
    assert [r.params.get("limit") for r in pages] == ["2"] * 5  # 9 services, 2 per page
    assert all("continue" in r.params for r in pages[1:])
    assert sorted(k[1] for k in running.registry.snapshot.services) == sorted(f"svc-{i}" for i in range(9))
    assert running.source.status.resources[SERVICE].objects == 9
    assert running.source.status.ready
    # each kind's whole listing was applied at once: no snapshot ever held part of the services
    counts = {len(s.services) for s in running.snapshots}
    assert counts <= {0, 9}


def test_a_list_in_one_page_gives_what_the_same_list_in_pages_gives(api: KubeApiStandIn, tmp_path: Path) -> None:
    """An API server answering from its watch cache ignores `limit`: the list comes whole, several
    batches of the streaming decoder long, with names, labels and escapes of every sort."""
    api.load([service(f"team-{i % 7}", f"bulk-{i}", f"10.97.{i // 250}.{i % 250 + 1}",
                      labels={"note": f"caf\u00e9-{i}" if i % 2 else f"x{i}"},
                      ports=[{"name": "h\u00e9", "port": 80, "protocol": "TCP"}] if i % 3 else None)
              for i in range(4000)]
             + [endpoint_slice(f"team-{i % 7}", f"bulk-{i}", [f"10.245.{i // 250}.{i % 250 + 1}"]) for i in range(0, 4000, 3)])
    synced_with: list[tuple[object, dict[str, int]]] = []
    for one_page in (False, True):
        api.one_page = one_page
        running = Running(api, tmp_path, page_size=500)
        try:
            synced(running)
            synced_with.append((running.registry.snapshot.services, running.registry.counts()))
        finally:
            running.source.stop()
    paged, whole = synced_with
    assert paged[1] == whole[1] == {NAMESPACE: 1, SERVICE: 4009, ENDPOINT_SLICE: 1335}
    assert paged[0] == whole[0]
    lists = api.lists("Service")
    assert [r.params.get("limit") for r in lists] == ["500"] * 10  # nine pages, then one page whole


def test_an_expired_continue_token_restarts_the_list(api: KubeApiStandIn, tmp_path: Path) -> None:
    compacted = threading.Event()

    def compact_mid_list(request: Request) -> None:
        if request.kind == "Service" and request.params.get("continue") and not compacted.is_set():
            compacted.set()
            api.compact()

    api.on_request = compact_mid_list
    running = Running(api, tmp_path, page_size=2, backoff=FAST_BACKOFF)
    try:
        synced(running)
        assert compacted.is_set()
        pages = api.lists("Service")
        assert [("continue" in r.params) for r in pages] == [False, True] + [False, True, True, True, True]
        assert len(running.registry.snapshot.services) == 9
    finally:
        running.source.stop()


@pytest.mark.parametrize("running", [{"watch_timeout": 2.0, "read_timeout_margin": 0.5}], indirect=True)
def test_the_server_side_timeout_is_jittered_and_resumed_without_a_relist(api: KubeApiStandIn,
                                                                          running: Running) -> None:
    synced(running)
    wait_for(lambda: len(api.watches("Service")) >= 2, CHANGE_WAIT, "a watch to time out and be resumed")
    watches = [r for kind in KINDS for r in api.watches(kind)]
    assert {int(r.params["timeoutSeconds"]) for r in watches} <= {2, 3}  # [T, 2T)
    first, resumed = api.watches("Service")[:2]
    assert resumed.params["resourceVersion"] == first.params["resourceVersion"]  # nothing happened meanwhile
    assert len(api.lists("Service")) == 1
    api.apply(service("shop", "late", "10.96.2.1"))
    wait_for(lambda: running.has("shop", "late"), CHANGE_WAIT, "a change after several watch restarts")


@pytest.mark.parametrize("running", [{"watch_timeout": 1.0, "read_timeout_margin": 0.5}], indirect=True)
def test_a_silent_connection_is_noticed_and_resumed(api: KubeApiStandIn, running: Running,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    synced(running)
    api.go_silent()
    before = len(api.watches("Service"))
    silent_since = time.monotonic()
    # timeoutSeconds is 1 and the read timeout 1.5 s: a stream silent longer than that is abandoned
    wait_for(lambda: len(api.watches("Service")) > before, CHANGE_WAIT,
             "the client to give up on the silent watch")
    assert time.monotonic() - silent_since >= 1.0
    assert "services: HTTPConnectionPool(host='127.0.0.1'" in caplog.text and "Read timed out" in caplog.text
    api.speak()
    api.apply(service("shop", "after-silence", "10.96.3.1"))
    wait_for(lambda: running.has("shop", "after-silence"), CHANGE_WAIT, "the change after the silence")
    assert len(api.lists("Service")) == 1  # resumed, not relisted
    assert running.source.status.resources[SERVICE].error == ""


@pytest.mark.parametrize("running", [{"backoff": FAST_BACKOFF}], indirect=True)
def test_errors_back_off_and_keep_the_last_data(api: KubeApiStandIn, running: Running) -> None:
    synced(running)
    status = running.source.status.resources[SERVICE]
    wait_for(lambda: status.phase is Phase.WATCHING, CHANGE_WAIT, "the services' loop to watch")
    api.fail_requests(500)
    failing_since, first = time.monotonic(), len(api.requests)
    api.drop_connections()
    wait_for(lambda: len(api.requests) >= first + 12, CHANGE_WAIT, "four failed attempts per resource")
    # Three loops, each waiting 0.05-0.1, 0.1-0.2, then 0.2-0.4 s (capped) between attempts: twelve
    # attempts take at least 0.35 s.  A loop that retried at once would make them in milliseconds.
    assert time.monotonic() - failing_since >= 0.3
    assert len(running.registry.snapshot.services) == 9  # nothing was emptied
    assert running.registry.snapshot.synced
    assert "HTTP 500" in status.error
    wait_for(lambda: status.phase is Phase.BACKING_OFF, CHANGE_WAIT, "the services' loop to back off", interval=0.005)
    api.fail_requests(None)
    api.apply(service("shop", "recovered", "10.96.4.1"))
    wait_for(lambda: running.has("shop", "recovered"), CHANGE_WAIT, "recovery once the API answers again")
    wait_for(lambda: status.phase is Phase.WATCHING, CHANGE_WAIT, "the services' loop to watch again")


# a wider quiet window than production's 10 ms, so that a busy test machine pausing the stand-in's
# writer mid-burst rarely splits the burst
@pytest.mark.parametrize("running", [{"batch_quiet": 0.05, "batch_max_delay": 0.2}], indirect=True)
def test_a_burst_of_events_is_applied_in_batches_in_order(api: KubeApiStandIn, running: Running) -> None:
    synced(running)
    before = len(running.snapshots)
    count = len(running.registry.snapshot.services)
    api.apply(*[service("shop", f"burst-{i}", f"10.96.5.{i + 1}") for i in range(200)])
    wait_for(lambda: running.has("shop", "burst-199"), CHANGE_WAIT, "the burst")
    sizes = [count] + [len(snapshot.services) for snapshot in running.snapshots[before:]]
    assert sizes == sorted(sizes) and sizes[-1] == count + 200  # in order, nothing lost
    # batched: events that arrive together are applied together, not one snapshot each (how many
    # snapshots a burst takes depends on the machine's scheduling; the unit test pins it down exactly)
    assert len(sizes) - 1 < 200 and max(b - a for a, b in zip(sizes, sizes[1:])) > 1


def test_events_carry_resource_versions_and_bookmarks_move_them(tmp_path: Path) -> None:
    api = KubeApiStandIn(bookmark_interval=0.2).start()
    api.load([namespace("shop"), service("shop", "a", "10.96.6.1")])
    running = Running(api, tmp_path)
    try:
        synced(running)
        status = running.source.status.resources[NAMESPACE]
        api.apply(service("shop", "b", "10.96.6.2"))  # moves the global version past the namespace watch
        wait_for(lambda: running.has("shop", "b"), CHANGE_WAIT, "the change")
        wait_for(lambda: int(status.resource_version or 0) == api.resource_version, CHANGE_WAIT,
                 "a bookmark to move the namespaces' resourceVersion on")
    finally:
        running.source.stop()
        api.stop()


def test_stop_cuts_the_open_watches_and_ends_every_thread(api: KubeApiStandIn, tmp_path: Path) -> None:
    """Each watch would run for minutes: stop() must cut it, not wait it out."""
    running = Running(api, tmp_path)
    synced(running)
    wait_for(lambda: all(api.watches(kind) for kind in KINDS), CHANGE_WAIT, "every watch to be open")
    running.source.stop(timeout=CHANGE_WAIT)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("kube-") and t.is_alive()]
    assert {kind: s.phase for kind, s in running.source.status.resources.items()} == dict.fromkeys(KINDS, Phase.STOPPED)
