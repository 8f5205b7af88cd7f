"""The benchmarks' own logic: dnsperf's output read right, the generated cluster as kubectl and the API show it,
the query mixes, and the churn's changes and the answers it expects.

These parts decide what the benchmarks report; the runs themselves (servers, dnsperf, NSD) are
not repeated here.  The dnsperf tests run a stand-in `dnsperf` script that prints real dnsperf
2.10 output.
"""

from __future__ import annotations

import dataclasses
import random
import stat
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from churn import MAX_ENDPOINTS, Churn, expectations  # noqa: E402
from cluster import (  # noqa: E402
    Cluster,
    _yaml_scalar,
    api_objects,
    build_cluster,
    write_fixtures,
    write_zone,
)
from common import BenchError, dnsperf, percentile  # noqa: E402
from queries import CHURN_MIX, MIX, build_queries  # noqa: E402
from run import BASELINE, FLAGS, Result, against_baseline, paired  # noqa: E402

from dns_server.cluster.sources.fixtures import load_yaml, parse_manifest  # noqa: E402

DNSPERF_OUTPUT = """\
DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 127.0.0.1 -p 55797 -d /tmp/q.txt -n 3 -v
[Status] Sending queries (to 127.0.0.1:55797)
[Status] Started at: Tue Dec  1 15:24:37 2026
[Status] Stopping after 3 runs through file
> NOERROR kubernetes.default.svc.cluster.local A 0.000636
> NXDOMAIN nope.default.svc.cluster.local A 0.000429
> NOERROR kubernetes.default.svc.cluster.local A 0.001495
> NXDOMAIN nope.default.svc.cluster.local A 0.001422
> NOERROR Kubernetes.default.svc.cluster.local. A 0.001419
> NXDOMAIN nope.default.svc.cluster.local A 0.001351
[Status] Testing complete (end of file)

Statistics:

  Queries sent:         7
  Queries completed:    6 (85.71%)
  Queries lost:         1 (14.29%)

  Response codes:       NOERROR 3 (50.00%), NXDOMAIN 3 (50.00%)
  Average packet size:  request 51, response 86
  Run time (s):         0.003253
  Queries per second:   1844.451276

  Average Latency (s):  0.001125 (min 0.000429, max 0.001495)
  Latency StdDev (s):   0.000466
"""


@pytest.fixture
def fake_dnsperf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `dnsperf` first on PATH that prints what the file `output` holds and exits with `status`."""
    tools = tmp_path / "tools"
    tools.mkdir()
    script = tools / "dnsperf"
    script.write_text(f'#!/bin/sh\ncat {tools}/output\nexit $(cat {tools}/status)\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    (tools / "output").write_text(DNSPERF_OUTPUT)
    (tools / "status").write_text("0")
    monkeypatch.setenv("PATH", f"{tools}:/usr/bin:/bin")
    return tools


def test_dnsperf_statistics_and_per_query_latencies(fake_dnsperf: Path, tmp_path: Path) -> None:
    verbose = tmp_path / "verbose.out"
    run = dnsperf(53, tmp_path / "queries", [], verbose_file=verbose,
                  classify=lambda name: "hit" if name == "kubernetes.default.svc.cluster.local" else "miss")
    assert (run.completed, run.lost, run.seconds) == (6, 1, 0.003253)
    assert run.qps == pytest.approx(6 / 0.003253)
    assert run.avg_ms == pytest.approx(1.125)
    assert sorted(run.latency_us.elements()) == [429, 636, 1351, 1419, 1422, 1495]
    assert run.percentile_ms(0.5) == pytest.approx(1.351)
    # names are lower-cased without the final dot before they are classified
    assert sorted(run.classes["hit"].elements()) == [636, 1419, 1495]
    assert run.percentile_ms(0.99, "miss") == pytest.approx(1.422)
    assert not verbose.exists()  # 50 MB a run in /dev/shm: removed once read


def test_dnsperf_statistics_without_verbose_lines(fake_dnsperf: Path, tmp_path: Path) -> None:
    run = dnsperf(53, tmp_path / "queries", ["-l", "1"])
    assert (run.completed, run.lost) == (6, 1)
    assert not run.latency_us


def test_dnsperf_that_prints_no_statistics_is_an_error(fake_dnsperf: Path, tmp_path: Path) -> None:
    (fake_dnsperf / "output").write_text("Error: could not open /tmp/nothing\n")
    (fake_dnsperf / "status").write_text("1")
    with pytest.raises(BenchError, match="(?s)exited with 1.*could not open"):
        dnsperf(53, tmp_path / "queries", [])


@pytest.mark.parametrize("histogram, fraction, expected", [
    (Counter([3, 1, 2]), 0.5, 2),
    (Counter({1: 99, 100: 1}), 0.99, 1),
    (Counter({1: 98, 100: 2}), 0.99, 100),
    (Counter({5: 1}), 0.999, 5),
    (Counter({0.25: 3, 0.5: 1}), 1.0, 0.5),
])
def test_percentile(histogram: Counter[float], fraction: float, expected: float) -> None:
    assert percentile(histogram, fraction) == expected


def test_percentile_of_nothing_is_nan() -> None:
    assert percentile(Counter(), 0.5) != percentile(Counter(), 0.5)


# -- the cluster -----------------------------------------------------------------------------------
def small_cluster() -> Cluster:
    return build_cluster(namespaces=3, services=12, headless=6)


def test_fixtures_are_the_api_objects_as_kubectl_prints_them(tmp_path: Path) -> None:
    cluster = small_cluster()
    path = write_fixtures(cluster, tmp_path)
    read = parse_manifest(path)
    for obj in read:
        del obj["metadata"]["resourceVersion"]
    assert read == list(api_objects(cluster, managed_fields=False, kinds=("Namespace", "Service", "EndpointSlice")))
    assert "managedFields" not in path.read_text()


@pytest.mark.parametrize("text", ["", "true", "No", "null", "None", "10.96.0.1", "2024-05-02T09:14:07Z", "1e3",
                                  "Cluster", "discovery.k8s.io/v1", "f:metadata", "- x", "a: b", "#x"])
def test_every_string_reads_back_as_itself(text: str) -> None:
    assert load_yaml(f"key: {_yaml_scalar(text)}\n".encode()) == [{"key": text}]


def test_the_cluster_at_the_sync_benchmark_scale_shape() -> None:
    cluster = build_cluster(namespaces=2, services=4, headless=0, backed=True, pods=30)
    kinds = Counter(obj["kind"] for obj in api_objects(cluster))
    assert kinds == {"Namespace": 2, "Service": 4, "EndpointSlice": 4, "Pod": 30}
    endpoint_pods = {(s.namespace, e.pod, e.address) for s in cluster.services for e in s.endpoints}
    assert endpoint_pods <= {(p.namespace, p.name, p.address) for p in cluster.pods}  # endpoints are real pods
    assert len({p.address for p in cluster.pods}) == 30


def test_the_zone_holds_only_ready_endpoints(tmp_path: Path) -> None:
    cluster = small_cluster()
    service = cluster.headless[0]
    first, second = service.endpoints[:2]
    changed = dataclasses.replace(service, endpoints=(dataclasses.replace(first, ready=False), *service.endpoints[1:]))
    zone = write_zone(dataclasses.replace(cluster, headless=(changed, *cluster.headless[1:])),
                      tmp_path / "zone").read_text()
    assert f"IN A {first.address}\n" not in zone
    assert f"IN A {second.address}\n" in zone
    assert f" 0 25 5432 {second.label}.{service.fqdn}." in zone  # 4 ready: weight 100/4


# -- the query mixes -------------------------------------------------------------------------------
def kind_of(name: str, qtype: str, cluster_ips: set[str], headless: set[str]) -> str:
    if qtype == "SRV":
        return "SRV"
    if name not in cluster_ips | headless:
        return "MISS"
    if qtype == "AAAA":
        return "AAAA"
    return "CLUSTER_IP" if name in cluster_ips else "HEADLESS"


@pytest.mark.parametrize("mix", [MIX, CHURN_MIX])
def test_query_mix(mix: tuple[tuple[str, float], ...]) -> None:
    cluster = small_cluster()
    questions = build_queries(cluster, 2000, mix=mix)
    cluster_ips = {s.fqdn for s in cluster.services}
    headless = {s.fqdn for s in cluster.headless}
    kinds = Counter(kind_of(name, qtype, cluster_ips, headless) for name, qtype in questions)
    wanted = Counter({kind: round(2000 * share) for kind, share in mix})
    if "A" in wanted:  # A asks any service, ClusterIP or headless
        assert kinds["CLUSTER_IP"] + kinds["HEADLESS"] == wanted.pop("A")
        del kinds["CLUSTER_IP"], kinds["HEADLESS"]
    assert kinds == wanted
    ports = {s.fqdn: {name for name, _, _ in s.ports} for s in (*cluster.services, *cluster.headless)}
    for name, qtype in questions:
        if qtype == "SRV":
            port, _, fqdn = name.split(".", 2)
            assert port[1:] in ports[fqdn]
    misses = [name for name, qtype in questions if kind_of(name, qtype, cluster_ips, headless) == "MISS"]
    assert {qtype for name, qtype in questions if name in misses} == {"A", "AAAA"}


# -- churn -----------------------------------------------------------------------------------------
def ready_addresses(slice_object: dict[str, Any]) -> frozenset[str]:
    return frozenset(e["addresses"][0] for e in slice_object["endpoints"] if e["conditions"]["ready"])


def test_every_change_alters_one_services_answers() -> None:
    cluster = small_cluster()
    churn = Churn(cluster)
    ready = {s.slice_name: frozenset(e.address for e in s.endpoints) for s in cluster.headless}
    for _ in range(2000):
        changed = churn.change()
        name = changed["metadata"]["name"]
        now = ready_addresses(changed)
        assert now and now != ready[name]
        assert len(changed["endpoints"]) <= MAX_ENDPOINTS
        ready[name] = now
    state = churn.state()
    assert {s.slice_name: frozenset(e.address for e in state[s.fqdn] if e.ready) for s in cluster.headless} == ready


def test_expected_answers_follow_the_state() -> None:
    cluster = small_cluster()
    churn = Churn(cluster)
    for _ in range(300):
        churn.change()
    state = churn.state()
    expected = expectations(cluster, state, random.Random(1), 50)
    by_name = {s.fqdn: s for s in cluster.headless}
    for item in expected:
        if item.qtype == "A" and item.name in by_name:
            assert item.records == {e.address for e in state[item.name] if e.ready}
        elif item.qtype == "SRV":
            service = by_name[item.name.split(".", 2)[2]]
            assert item.records == {f"5432 {e.label}.{service.fqdn}." for e in state[service.fqdn] if e.ready}
    assert {item.rcode for item in expected} == {0, 3}  # answers and search-path misses
    assert {item.qtype for item in expected} == {"A", "SRV"}


def test_configurations_are_compared_slice_by_slice_within_each_turn() -> None:
    """A slow minute of the shared machine falls on both slices of a turn, so it cancels in their ratio."""
    def result(*slices: float) -> Result:
        return Result(slice_qps=list(slices))

    rounds = [{"a": result(90, 45), "b": result(100, 50)}, {"a": result(99), "b": result(100)}]
    assert paired(rounds, "a", "b") == [0.9, 0.9, 0.99]
    with pytest.raises(ValueError):  # a lost slice is an error, not a silently shifted pairing
        paired([{"a": result(90, 45), "b": result(100)}], "a", "b")


def test_this_checkout_against_the_baseline() -> None:
    """Saturated slices (UDP and TCP) pair within each turn; first pass, start-up and RSS within each round."""
    def result(udp: list[float], tcp: list[float], cold: float, startup: float, rss: float) -> Result:
        r = Result(slice_qps=udp, tcp_slice_qps=tcp, startup_s=startup, rss_mb=rss)
        r.cold.completed, r.cold.seconds = round(cold), 1.0
        return r

    rounds = [{FLAGS: result([99, 48], [40], 30_000, 1.0, 120), BASELINE: result([100, 50], [50], 25_000, 2.0, 100)},
              {FLAGS: result([102], [45], 33_000, 1.5, 110), BASELINE: result([100], [50], 30_000, 1.5, 100)}]
    ratios = dict(against_baseline(rounds))
    assert list(ratios.values()) == [pytest.approx([0.99, 0.96, 1.02]), pytest.approx([1.2, 1.1]),
                                     pytest.approx([0.8, 0.9]), pytest.approx([0.5, 1.0]), pytest.approx([1.2, 1.1])]
