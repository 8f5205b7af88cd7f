"""Several processes' metrics as one: what the supervisor's /metrics serves for its workers."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dns_server.observability.metrics import FIRST_BUCKET, Metrics, counting_only, merge_families, requests_of
from tests.doubles import server_block

A, NOERROR = 1, 0
SERVER, ZONE = "dns://:53", "cluster.local."


def worker(queries: int, slow: int, cache_entries: int) -> Metrics:
    """A worker's metrics: `queries` counted (`slow` of them in a slow bucket), a cache holding entries."""
    metrics = Metrics()
    metrics.set_plugins([server_block(". {\n kubernetes cluster.local\n prometheus\n}\n")])
    tally = metrics.queries.tally(SERVER, ZONE, "", "udp", "1", A, NOERROR, "kubernetes", False, 45, 61)
    for index in range(queries):
        tally.count += 1
        if index < slow:
            tally.add_slow(FIRST_BUCKET * 3)
    counters = metrics.cache(SERVER, ".", lambda: (cache_entries, 1))
    counters.requests += queries
    return metrics


def merged_samples(*processes: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    class Merged:
        def collect(self) -> object:
            return merge_families([list(process.registry.collect()) for process in processes])

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Merged())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


WHERE = {"server": SERVER, "zone": ZONE, "view": ""}


def test_counters_histograms_and_held_entries_add_up() -> None:
    found = merged_samples(worker(3, 1, 10), worker(4, 2, 5))
    assert value(found, "coredns_dns_requests_total", **WHERE, proto="udp", family="1", type="A") == 7
    assert value(found, "coredns_dns_request_duration_seconds_count", **WHERE) == 7
    assert value(found, "coredns_dns_request_duration_seconds_bucket", **WHERE, le="0.00025") == 4
    assert value(found, "coredns_dns_request_duration_seconds_bucket", **WHERE, le="+Inf") == 7
    assert value(found, "coredns_cache_requests_total", server=SERVER, zones=".", view="") == 7
    assert value(found, "coredns_cache_entries", server=SERVER, type="success", zones=".", view="") == 15


def test_constant_gauges_stay_one_and_the_start_time_is_the_earliest() -> None:
    first, second = worker(1, 0, 0), worker(1, 0, 0)
    found = merged_samples(first, second)
    assert {v for (name, _), v in found.items() if name in ("coredns_build_info", "coredns_plugin_enabled")} == {1.0}
    starts = [value(merged_samples(process), "process_start_time_seconds") for process in (first, second)]
    assert value(found, "process_start_time_seconds") == min(starts)


def test_a_process_that_is_gone_adds_its_counts_but_not_what_it_held() -> None:
    gone = counting_only(list(worker(5, 0, 10).registry.collect()))
    assert requests_of(gone) == 5
    assert {family.type for family in gone} <= {"counter", "histogram", "summary"}
    assert not [family for family in gone if family.name == "coredns_cache_entries"]
