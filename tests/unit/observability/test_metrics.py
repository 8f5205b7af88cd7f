"""The metrics exposition: CoreDNS's names, types, labels, help texts and buckets, from tallies and instruments."""

from __future__ import annotations

import re
import threading

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dns_server.config.model import ZoneKey
from dns_server.observability.metrics import (
    DNS_PROGRAMMING_BUCKETS,
    FIRST_BUCKET,
    PROXY_NAME,
    SIZE_BUCKETS,
    SLIM_TIME_BUCKETS,
    TIME_BUCKETS,
    Metrics,
    Tally,
    rcode_label,
    server_label,
    type_label,
)
from tests.doubles import server_block

A, CAA = 1, 257
NOERROR, SERVFAIL, NXDOMAIN = 0, 2, 3
SERVER, ZONE = "dns://:53", "cluster.local."


def exposition(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


def families_text(metrics: Metrics, prefix: str) -> str:
    """The exposition lines of the families whose names start with `prefix`."""
    lines = [line for line in exposition(metrics).splitlines()
             if line.split(" ")[2 if line.startswith("#") else 0].startswith(prefix)]
    return "\n".join(lines) + "\n"


def count(tally: Tally, seconds: float) -> None:
    """Exactly what the pipeline's hot path does for one query."""
    tally.count += 1
    tally.seconds += seconds
    if seconds > FIRST_BUCKET:
        tally.add_slow(seconds)


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(exposition(metrics)) for s in family.samples}


def duration_buckets(metrics: Metrics) -> list[float]:
    found = samples(metrics)
    where = (("server", SERVER), ("view", ""), ("zone", ZONE))
    bounds = [repr(b) for b in TIME_BUCKETS] + ["+Inf"]
    return [found[("coredns_dns_request_duration_seconds_bucket", tuple(sorted((*where, ("le", le)))))]
            for le in bounds]


# Durations that add up exactly in binary, so `_sum` prints without rounding noise.
FAST = 2.0 ** -13  # 0.000122 s: the first bucket
SLOW = 2.0 ** -8  # 0.0039 s: le="0.004"
STUCK = 16.0  # +Inf

QUERY_FAMILIES = f"""\
# HELP coredns_dns_requests_total Counter of DNS requests made per zone, protocol and family.
# TYPE coredns_dns_requests_total counter
coredns_dns_requests_total{{family="2",proto="tcp",server="dns://:53",type="other",view="",zone="cluster.local."}} 1.0
coredns_dns_requests_total{{family="1",proto="udp",server="dns://:53",type="A",view="",zone="cluster.local."}} 3.0
# HELP coredns_dns_request_duration_seconds Histogram of the time (in seconds) each request took per zone.
# TYPE coredns_dns_request_duration_seconds histogram
{"".join(f'coredns_dns_request_duration_seconds_bucket{{le="{le}",server="dns://:53",view="",zone="cluster.local."}} '
         f'{n}.0{chr(10)}' for le, n in [
             ("0.00025", 2), ("0.0005", 2), ("0.001", 2), ("0.002", 2), ("0.004", 3), ("0.008", 3), ("0.016", 3),
             ("0.032", 3), ("0.064", 3), ("0.128", 3), ("0.256", 3), ("0.512", 3), ("1.024", 3), ("2.048", 3),
             ("4.096", 3), ("8.192", 3), ("+Inf", 4)])}\
coredns_dns_request_duration_seconds_count{{server="dns://:53",view="",zone="cluster.local."}} 4.0
coredns_dns_request_duration_seconds_sum{{server="dns://:53",view="",zone="cluster.local."}} 16.004150390625
# HELP coredns_dns_request_size_bytes Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol.
# TYPE coredns_dns_request_size_bytes histogram
{"".join(f'coredns_dns_request_size_bytes_bucket{{le="{le}",proto="tcp",server="dns://:53",view="",'
         f'zone="cluster.local."}} {0 if i < 2 else 1}.0{chr(10)}' for i, le in enumerate([
             "0", "100", "200", "300", "400", "511", "1023", "2047", "4095", "8291", "16000", "32000", "48000",
             "64000", "+Inf"]))}\
coredns_dns_request_size_bytes_count{{proto="tcp",server="dns://:53",view="",zone="cluster.local."}} 1.0
coredns_dns_request_size_bytes_sum{{proto="tcp",server="dns://:53",view="",zone="cluster.local."}} 120.0
{"".join(f'coredns_dns_request_size_bytes_bucket{{le="{le}",proto="udp",server="dns://:53",view="",'
         f'zone="cluster.local."}} {0 if i < 1 else 3}.0{chr(10)}' for i, le in enumerate([
             "0", "100", "200", "300", "400", "511", "1023", "2047", "4095", "8291", "16000", "32000", "48000",
             "64000", "+Inf"]))}\
coredns_dns_request_size_bytes_count{{proto="udp",server="dns://:53",view="",zone="cluster.local."}} 3.0
coredns_dns_request_size_bytes_sum{{proto="udp",server="dns://:53",view="",zone="cluster.local."}} 135.0
# HELP coredns_dns_do_requests_total Counter of DNS requests with DO bit set per zone.
# TYPE coredns_dns_do_requests_total counter
coredns_dns_do_requests_total{{server="dns://:53",view="",zone="cluster.local."}} 1.0
# HELP coredns_dns_response_size_bytes Size of the returned response in bytes.
# TYPE coredns_dns_response_size_bytes histogram
{"".join(f'coredns_dns_response_size_bytes_bucket{{le="{le}",proto="tcp",server="dns://:53",view="",'
         f'zone="cluster.local."}} {0 if i < 7 else 1}.0{chr(10)}' for i, le in enumerate([
             "0", "100", "200", "300", "400", "511", "1023", "2047", "4095", "8291", "16000", "32000", "48000",
             "64000", "+Inf"]))}\
coredns_dns_response_size_bytes_count{{proto="tcp",server="dns://:53",view="",zone="cluster.local."}} 1.0
coredns_dns_response_size_bytes_sum{{proto="tcp",server="dns://:53",view="",zone="cluster.local."}} 2000.0
{"".join(f'coredns_dns_response_size_bytes_bucket{{le="{le}",proto="udp",server="dns://:53",view="",'
         f'zone="cluster.local."}} {0 if i < 1 else 3}.0{chr(10)}' for i, le in enumerate([
             "0", "100", "200", "300", "400", "511", "1023", "2047", "4095", "8291", "16000", "32000", "48000",
             "64000", "+Inf"]))}\
coredns_dns_response_size_bytes_count{{proto="udp",server="dns://:53",view="",zone="cluster.local."}} 3.0
coredns_dns_response_size_bytes_sum{{proto="udp",server="dns://:53",view="",zone="cluster.local."}} 183.0
# HELP coredns_dns_responses_total Counter of response status codes.
# TYPE coredns_dns_responses_total counter
coredns_dns_responses_total{{plugin="kubernetes",rcode="NOERROR",server="dns://:53",view="",zone="cluster.local."}} 3.0
coredns_dns_responses_total{{plugin="kubernetes",rcode="NXDOMAIN",server="dns://:53",view="",zone="cluster.local."}} 1.0
"""


def test_tallies_become_coredns_query_families() -> None:
    metrics = Metrics()
    udp = metrics.queries.tally(SERVER, ZONE, "", "udp", "1", A, NOERROR, "kubernetes", False, 45, 61)
    tcp = metrics.queries.tally(SERVER, ZONE, "", "tcp", "2", CAA, NXDOMAIN, "kubernetes", True, 120, 2000)
    for seconds in (FAST, SLOW, STUCK):
        count(udp, seconds)
    count(tcp, FAST)
    assert families_text(metrics, "coredns_dns_") == QUERY_FAMILIES


def test_a_label_set_and_sizes_share_one_tally() -> None:
    queries = Metrics().queries
    first = queries.tally(SERVER, ZONE, "", "udp", "1", A, NOERROR, "kubernetes", False, 45, 61)
    assert queries.tally(SERVER, ZONE, "", "udp", "1", A, NOERROR, "kubernetes", False, 45, 61) is first
    assert queries.tally(SERVER, ZONE, "", "udp", "1", A, NOERROR, "kubernetes", False, 46, 61) is not first
    assert queries.tally(SERVER, ZONE, "", "udp", "1", A, NXDOMAIN, "kubernetes", False, 45, 61) is not first


def test_a_tally_that_has_not_counted_is_not_reported() -> None:
    metrics = Metrics()
    metrics.queries.tally(SERVER, ZONE, "", "udp", "1", A, NOERROR, "kubernetes", False, 45, 61)
    assert "coredns_dns_" not in exposition(metrics)


@pytest.mark.parametrize("seconds, bucket", [
    (0.00025 + 1e-9, 1),  # just over the first bound
    (0.0005, 1),  # a bound is in its own bucket (le is "less or equal")
    (0.0005 + 1e-9, 2),
    (0.003, 4),
    (8.192, 15),
    (8.2, 16),  # +Inf
    (3600.0, 16),
])
def test_a_slow_query_lands_in_its_bucket(seconds: float, bucket: int) -> None:
    tally = Tally()
    tally.add_slow(seconds)
    assert tally.slow == [int(i == bucket) for i in range(len(TIME_BUCKETS) + 1)]
    assert (tally.count, tally.seconds) == (0, 0.0)


def test_a_query_read_between_its_count_and_its_bucket_never_makes_a_bucket_go_down() -> None:
    """The event loop may be interrupted after `count += 1` and before `add_slow()`: a scrape then sees the
    query as fast; the next scrape must not report fewer in any bucket (Prometheus would see a reset)."""
    metrics = Metrics()
    tally = metrics.queries.tally(SERVER, ZONE, "", "udp", "1", A, NOERROR, "kubernetes", False, 45, 61)
    count(tally, SLOW)
    tally.count += 1
    tally.seconds += SLOW
    torn = duration_buckets(metrics)
    assert torn[0] == 1 and torn[-1] == 2  # counted, not yet in its slow bucket: read as fast
    tally.add_slow(SLOW)
    after = duration_buckets(metrics)
    assert all(now >= before for now, before in zip(after, torn))
    assert after[-1] == 2 and after[4] == 2  # the +Inf count is exact; both are in le="0.004"


def test_buckets_stay_consistent_while_the_event_loop_counts() -> None:
    """Scrapes on one thread while another counts queries: every scrape is a valid histogram, and no
    bucket ever goes down from one scrape to the next."""
    metrics = Metrics()
    tallies = [metrics.queries.tally(SERVER, ZONE, "", "udp", "1", A, rcode, "kubernetes", False, 45, 61)
               for rcode in (NOERROR, NXDOMAIN)]
    done = threading.Event()

    def event_loop() -> None:
        for i in range(200_000):
            count(tallies[i % 2], (FAST, SLOW, 0.02, STUCK)[i % 4])
        done.set()

    thread = threading.Thread(target=event_loop)
    thread.start()
    previous = [0.0] * (len(TIME_BUCKETS) + 1)
    while not done.is_set():
        buckets = duration_buckets(metrics) if "coredns_dns_" in exposition(metrics) else previous
        assert buckets == sorted(buckets)  # cumulative: never fewer at a larger bound
        assert all(now >= before for now, before in zip(buckets, previous))
        previous = buckets
    thread.join()
    assert duration_buckets(metrics)[-1] == 200_000


@pytest.mark.parametrize("qtype, label", [
    (1, "A"), (28, "AAAA"), (5, "CNAME"), (33, "SRV"), (12, "PTR"), (6, "SOA"), (2, "NS"), (16, "TXT"),
    (15, "MX"), (48, "DNSKEY"), (43, "DS"), (47, "NSEC"), (50, "NSEC3"), (46, "RRSIG"), (64, "SVCB"),
    (65, "HTTPS"), (251, "IXFR"), (252, "AXFR"), (255, "ANY"),
    (257, "other"), (99, "other"), (13, "other"), (0, "other"), (65535, "other"),
])
def test_the_type_label_names_only_the_types_coredns_monitors(qtype: int, label: str) -> None:
    assert type_label(qtype) == label


@pytest.mark.parametrize("rcode, label", [
    (0, "NOERROR"), (1, "FORMERR"), (2, "SERVFAIL"), (3, "NXDOMAIN"), (4, "NOTIMP"), (5, "REFUSED"),
    (6, "YXDOMAIN"), (9, "NOTAUTH"), (10, "NOTZONE"), (11, "DSOTYPENI"), (16, "BADSIG"), (23, "BADCOOKIE"),
    (12, "RCODE12"), (24, "RCODE24"), (4095, "RCODE4095"),
])
def test_the_rcode_label_is_the_mnemonic_or_rcode_n(rcode: int, label: str) -> None:
    assert rcode_label(rcode) == label


@pytest.mark.parametrize("host, port, label", [
    ("", 53, "dns://:53"), ("169.254.20.10", 53, "dns://169.254.20.10:53"), ("::1", 1053, "dns://[::1]:1053")])
def test_the_server_label_is_the_listener(host: str, port: int, label: str) -> None:
    assert server_label(host, port) == label


def test_buckets_are_coredns_buckets() -> None:
    assert TIME_BUCKETS == (0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256,
                            0.512, 1.024, 2.048, 4.096, 8.192)
    assert SLIM_TIME_BUCKETS == (0.00025, 0.0025, 0.025, 0.25, 2.5)
    assert SIZE_BUCKETS == (0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16e3, 32e3, 48e3, 64e3)
    assert (len(DNS_PROGRAMMING_BUCKETS), DNS_PROGRAMMING_BUCKETS[0], DNS_PROGRAMMING_BUCKETS[-1]) == (20, 0.001, 524.288)


# Reference: plugin/metrics/vars/vars.go, plugin/cache/metrics.go, plugin/pkg/proxy/metrics.go,
# plugin/forward/metrics.go, plugin/kubernetes/metrics.go, plugin/health/overloaded.go, plugin/reload/metrics.go,
# plugin/hosts/metrics.go, coremain (build_info), core/dnsserver (panics).
COREDNS_FAMILIES = {
    "coredns_build_info": ("gauge", ["goversion", "revision", "version"],
                           "A metric with a constant '1' value labeled by version, revision, and goversion from "
                           "which CoreDNS was built."),
    "coredns_plugin_enabled": ("gauge", ["name", "server", "view", "zone"],
                               "A metric that indicates whether a plugin is enabled on per server and zone basis."),
    "coredns_panics_total": ("counter", [], "A metrics that counts the number of panics."),
    "coredns_dns_requests_total": ("counter", ["family", "proto", "server", "type", "view", "zone"],
                                   "Counter of DNS requests made per zone, protocol and family."),
    "coredns_dns_request_duration_seconds": ("histogram", ["server", "view", "zone"],
                                             "Histogram of the time (in seconds) each request took per zone."),
    "coredns_dns_request_size_bytes": ("histogram", ["proto", "server", "view", "zone"],
                                       "Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol."),
    "coredns_dns_do_requests_total": ("counter", ["server", "view", "zone"],
                                      "Counter of DNS requests with DO bit set per zone."),
    "coredns_dns_response_size_bytes": ("histogram", ["proto", "server", "view", "zone"],
                                        "Size of the returned response in bytes."),
    "coredns_dns_responses_total": ("counter", ["plugin", "rcode", "server", "view", "zone"],
                                    "Counter of response status codes."),
    "coredns_cache_entries": ("gauge", ["server", "type", "view", "zones"], "The number of elements in the cache."),
    "coredns_cache_requests_total": ("counter", ["server", "view", "zones"], "The count of cache requests."),
    "coredns_cache_hits_total": ("counter", ["server", "type", "view", "zones"], "The count of cache hits."),
    "coredns_cache_misses_total": ("counter", ["server", "view", "zones"],
                                   "The count of cache misses. Deprecated, derive misses from cache hits/requests "
                                   "counters."),
    "coredns_cache_prefetch_total": ("counter", ["server", "view", "zones"],
                                     "The number of times the cache has prefetched a cached item."),
    "coredns_cache_drops_total": ("counter", ["server", "view", "zones"],
                                  "The number responses that are not cached, because the reply is malformed."),
    "coredns_cache_served_stale_total": ("counter", ["server", "view", "zones"],
                                         "The number of requests served from stale cache entries."),
    "coredns_cache_evictions_total": ("counter", ["server", "type", "view", "zones"], "The count of cache evictions."),
    "coredns_forward_healthcheck_broken_total": ("counter", [],
                                                 "Counter of the number of complete failures of the healthchecks."),
    "coredns_forward_max_concurrent_rejects_total": ("counter", [], "Counter of the number of queries rejected "
                                                                    "because the concurrent queries were at maximum."),
    "coredns_proxy_request_duration_seconds": ("histogram", ["proxy_name", "rcode", "to"],
                                               "Histogram of the time each request took."),
    "coredns_proxy_healthcheck_failures_total": ("counter", ["proxy_name", "to"],
                                                 "Counter of the number of failed healthchecks."),
    "coredns_proxy_conn_cache_hits_total": ("counter", ["proto", "proxy_name", "to"],
                                            "Counter of connection cache hits per upstream and protocol."),
    "coredns_proxy_conn_cache_misses_total": ("counter", ["proto", "proxy_name", "to"],
                                              "Counter of connection cache misses per upstream and protocol."),
    "coredns_kubernetes_dns_programming_duration_seconds": (
        "histogram", ["service_kind"], "Histogram of the time (in seconds) it took to program a dns instance."),
    "coredns_health_request_duration_seconds": ("histogram", [],
                                                "Histogram of the time (in seconds) each request took."),
    "coredns_health_request_failures_total": ("counter", [], "The number of times the health check failed."),
    "coredns_reload_failed_total": ("counter", [], "Counter of the number of failed reload attempts."),
    "coredns_reload_version_info": ("gauge", ["hash", "value"], "A metric with a constant '1' value labeled by hash, "
                                                                "and value which type of hash generated."),
    "coredns_hosts_entries": ("gauge", ["hostsfile"], "The combined number of entries in hosts and Corefile."),
    "coredns_hosts_reload_timestamp_seconds": ("gauge", [], "The timestamp of the last reload of hosts file."),
    "coredns_template_matches_total": ("counter", ["class", "server", "type", "view", "zone"],
                                       "Counter of template regex matches."),
    "coredns_template_template_failures_total": ("counter", ["class", "section", "server", "template", "type", "view",
                                                             "zone"], "Counter of go template failures."),
    "coredns_template_rr_failures_total": ("counter", ["class", "section", "server", "template", "type", "view",
                                                       "zone"], "Counter of mis-templated RRs."),
}

PRESENT_AT_START = {"coredns_build_info", "coredns_panics_total", "coredns_forward_healthcheck_broken_total",
                    "coredns_forward_max_concurrent_rejects_total", "coredns_health_request_duration_seconds",
                    "coredns_health_request_failures_total", "coredns_reload_failed_total",
                    "coredns_hosts_reload_timestamp_seconds"}


def declared(metrics: Metrics) -> dict[str, tuple[str, list[str], str]]:
    """Each family's type, label names (without `le`) and help, keyed by the name Go would print."""
    found = {}
    for family in text_string_to_metric_families(exposition(metrics)):
        name = family.name + "_total" if family.type == "counter" else family.name
        labels = sorted({key for sample in family.samples for key in sample.labels} - {"le"})
        found[name] = (family.type, labels, family.documentation)
    return found


def observe_everything(metrics: Metrics) -> None:
    """One observation in every family."""
    count(metrics.queries.tally(SERVER, ZONE, "", "udp", "1", A, NOERROR, "kubernetes", True, 45, 61), FAST)
    failed = ("example.org.", "IN", "A", "answer", "{{.Name}} 60 IN A {{index .Match 9}}")
    count(metrics.queries.tally(SERVER, ZONE, "", "udp", "1", A, SERVFAIL, "template", False, 45, 61, (
        ("coredns_template_matches_total", *failed[:3]), ("coredns_template_template_failures_total", *failed),
        ("coredns_template_rr_failures_total", *failed))), FAST)
    metrics.set_plugins([server_block((ZoneKey(""),), prometheus=("", 9153))])
    metrics.panics.inc()
    cache = metrics.cache(SERVER, ".", lambda: (10, 2))
    for name in ("requests", "success_hits", "denial_hits", "misses", "prefetches", "drops", "served_stale",
                 "success_evictions", "denial_evictions"):
        setattr(cache, name, 1)
    metrics.forward_healthcheck_broken.inc()
    metrics.forward_max_concurrent_rejects.inc()
    metrics.proxy_request_duration.labels(PROXY_NAME, "10.0.0.1:53", "NOERROR").observe(0.01)
    metrics.proxy_healthcheck_failures.labels(PROXY_NAME, "10.0.0.1:53").inc()
    metrics.proxy_conn_cache_hits.labels(PROXY_NAME, "10.0.0.1:53", "udp").inc()
    metrics.proxy_conn_cache_misses.labels(PROXY_NAME, "10.0.0.1:53", "tcp").inc()
    metrics.dns_programming_duration.labels("cluster_ip").observe(0.5)
    metrics.health_duration.observe(0.001)
    metrics.health_failures.inc()
    metrics.reload_failed.inc()
    metrics.set_reload_version("ab" * 64)
    metrics.hosts_entries.labels("/etc/hosts").set(3)
    metrics.hosts_reload_timestamp.set(1.7e9)


def test_every_coredns_family_is_declared_as_coredns_declares_it() -> None:
    metrics = Metrics()
    observe_everything(metrics)
    found = {name: value for name, value in declared(metrics).items() if name.startswith("coredns_")}
    assert found == COREDNS_FAMILIES


def test_the_first_scrape_has_what_coredns_registers_at_start_up() -> None:
    text = exposition(Metrics())
    coredns = {name for name in declared(Metrics()) if name.startswith("coredns_")}
    assert coredns == PRESENT_AT_START
    assert "_created" not in text  # client_golang exports no creation timestamps
    assert 'coredns_build_info{goversion="python3.' in text and "process_cpu_seconds_total" in text
    assert "dns_server_" not in text


def test_every_printed_family_has_a_sample() -> None:
    """A Go `...Vec` prints nothing before its first series; neither may we (no bare HELP/TYPE lines)."""
    lines = exposition(Metrics()).splitlines()
    for index, line in enumerate(lines):
        if line.startswith("# TYPE"):
            assert not lines[index + 1].startswith("#"), line


def test_bucket_bounds_print_as_go_prints_them() -> None:
    metrics = Metrics()
    count(metrics.queries.tally(SERVER, ZONE, "", "udp", "1", A, NOERROR, "", False, 45, 61), FAST)
    metrics.dns_programming_duration.labels("cluster_ip").observe(0.5)
    text = exposition(metrics)
    for le in ('le="0"', 'le="511"', 'le="16000"', 'le="64000"', 'le="0.00025"', 'le="8.192"', 'le="524.288"'):
        assert le in text
    assert not re.search(r'le="[0-9]+\.0"', text)  # no `le="16000.0"`


def test_plugins_enabled_per_listener_and_zone_of_blocks_with_prometheus() -> None:
    metrics = Metrics()
    blocks = [server_block((ZoneKey("cluster.local", 53), ZoneKey("", 53)), bind=("10.0.0.10", "::1"), loop=True,
                          prometheus=("", 9153), loadbalance=True),
              server_block((ZoneKey("example.org", 1053),), loadbalance=True)]  # no prometheus: not reported
    metrics.set_plugins(blocks)
    enabled = {tuple(dict(labels)[k] for k in ("server", "zone", "name"))
               for (name, labels), value in samples(metrics).items() if name == "coredns_plugin_enabled" and value == 1}
    assert enabled == {(server, zone, plugin) for server in ("dns://10.0.0.10:53", "dns://[::1]:53")
                       for zone in ("cluster.local.", ".") for plugin in ("loadbalance", "loop", "prometheus")}
    metrics.set_plugins([server_block((ZoneKey(""),), prometheus=("", 9153))])  # after a reload: only the new set
    assert {labels for (name, labels) in samples(metrics) if name == "coredns_plugin_enabled"} == {
        (("name", "prometheus"), ("server", "dns://:53"), ("view", ""), ("zone", "."))}


def test_the_reload_version_is_the_last_one_set() -> None:
    metrics = Metrics()
    metrics.set_reload_version("aa" * 64)
    metrics.set_reload_version("bb" * 64)
    assert {labels for (name, labels) in samples(metrics) if name == "coredns_reload_version_info"} == {
        (("hash", "sha512"), ("value", "bb" * 64))}


def test_cache_series_appear_once_counted_and_counts_survive_a_reload() -> None:
    metrics = Metrics()
    cache = metrics.cache(SERVER, ".", lambda: (7, 1))
    assert "coredns_cache_" not in exposition(metrics)  # no request yet: nothing, as CoreDNS
    cache.requests, cache.success_hits, cache.misses = 3, 2, 1
    assert families_text(metrics, "coredns_cache_") == """\
# HELP coredns_cache_entries The number of elements in the cache.
# TYPE coredns_cache_entries gauge
coredns_cache_entries{server="dns://:53",type="denial",view="",zones="."} 1.0
coredns_cache_entries{server="dns://:53",type="success",view="",zones="."} 7.0
# HELP coredns_cache_requests_total The count of cache requests.
# TYPE coredns_cache_requests_total counter
coredns_cache_requests_total{server="dns://:53",view="",zones="."} 3.0
# HELP coredns_cache_hits_total The count of cache hits.
# TYPE coredns_cache_hits_total counter
coredns_cache_hits_total{server="dns://:53",type="success",view="",zones="."} 2.0
# HELP coredns_cache_misses_total The count of cache misses. Deprecated, derive misses from cache hits/requests counters.
# TYPE coredns_cache_misses_total counter
coredns_cache_misses_total{server="dns://:53",view="",zones="."} 1.0
"""
    assert metrics.cache(SERVER, ".", lambda: (0, 0)) is cache  # a reload keeps counting where it was
    assert 'coredns_cache_entries{server="dns://:53",type="success",view="",zones="."} 0.0' in exposition(metrics)


def test_our_answer_cache_and_snapshot_families() -> None:
    metrics = Metrics()
    answers = metrics.answer_cache(SERVER, lambda: 12)
    answers.hits, answers.misses, answers.invalidations = 40, 12, 3
    metrics.snapshot("cluster.local.", lambda: 2.5, lambda: {"services": 10, "pods": 30})
    assert families_text(metrics, "dns_server_") == """\
# HELP dns_server_answer_cache_entries Encoded answers held in the answer cache.
# TYPE dns_server_answer_cache_entries gauge
dns_server_answer_cache_entries{server="dns://:53"} 12.0
# HELP dns_server_answer_cache_hits_total Queries answered from the answer cache.
# TYPE dns_server_answer_cache_hits_total counter
dns_server_answer_cache_hits_total{server="dns://:53"} 40.0
# HELP dns_server_answer_cache_misses_total Queries the answer cache had no answer for.
# TYPE dns_server_answer_cache_misses_total counter
dns_server_answer_cache_misses_total{server="dns://:53"} 12.0
# HELP dns_server_answer_cache_invalidations_total Cached answers dropped because the cluster data they came from changed.
# TYPE dns_server_answer_cache_invalidations_total counter
dns_server_answer_cache_invalidations_total{server="dns://:53"} 3.0
# HELP dns_server_answer_cache_evictions_total Cached answers dropped because the answer cache was full.
# TYPE dns_server_answer_cache_evictions_total counter
dns_server_answer_cache_evictions_total{server="dns://:53"} 0.0
# HELP dns_server_snapshot_age_seconds Seconds since the cluster data being served was last updated.
# TYPE dns_server_snapshot_age_seconds gauge
dns_server_snapshot_age_seconds{source="cluster.local."} 2.5
# HELP dns_server_snapshot_objects Objects in the cluster data being served, per kind.
# TYPE dns_server_snapshot_objects gauge
dns_server_snapshot_objects{kind="pods",source="cluster.local."} 30.0
dns_server_snapshot_objects{kind="services",source="cluster.local."} 10.0
"""


def test_watch_counters_per_resource() -> None:
    metrics = Metrics()
    metrics.watch_restarts.labels("services").inc()
    metrics.watch_relists.labels("pods").inc(2)
    found = samples(metrics)
    assert found[("dns_server_watch_restarts_total", (("resource", "services"),))] == 1
    assert found[("dns_server_watch_relists_total", (("resource", "pods"),))] == 2
