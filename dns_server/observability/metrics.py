"""The metrics the process exports: CoreDNS's names, types, labels, help texts and buckets.

Operators' dashboards and alert rules are written against CoreDNS 1.14; every `coredns_*` family
here is declared as CoreDNS declares it (`plugin/metrics/vars/vars.go`, `plugin/cache/metrics.go`,
`plugin/pkg/proxy/metrics.go`, ...), so they work unchanged.  Our own families are `dns_server_*`.

Theory of operation.  Counting a query must not cost the DNS hot path more than a few
increments, so the per-query families (`coredns_dns_*`) are not prometheus_client objects: the
pipeline counts each query into a `Tally` (shared by every query with the same label values and
sizes, and kept next to the cached answer), and the families are aggregated from all tallies when
Prometheus scrapes.  A scrape runs on an HTTP thread while the event loop thread keeps counting,
so a tally is read slow buckets first, count last: a query seen in a slow bucket is always in the
count, and the fast bucket (count minus the slow ones) is never negative.  A query whose slow
bucket was not yet written is reported fast for one scrape; so that no cumulative bucket ever goes
down (Prometheus would read a counter reset), each reported bucket is at least what the previous
scrape reported.  Everything else is updated on cold paths and uses ordinary prometheus_client
instruments, or counters a cache owns and that are read at scrape time.

Rules this module keeps:
- A labelled family appears once it has counted something, as a Go `...Vec` does; the unlabelled
  ones CoreDNS registers at start-up are present, at zero, from the first scrape.
- Label values are CoreDNS's: `server` is `dns://<bind>:<port>` (`dns://:53`), `zone` the block's
  zone with its trailing dot or `dropped`, `view` always "", `type` a monitored type's mnemonic or
  `other`, `rcode` the mnemonic or `RCODE<n>`.
- Bucket bounds print as Go prints them (`le="16000"`, not `16000.0`).
- No I/O here beyond prometheus_client's process collector, which reads /proc when scraped.
"""

from __future__ import annotations

import sys
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import accumulate, chain

from dnslib import QTYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.samples import Sample

import dns_server
from dns_server.config.model import ServerBlock, format_address
from dns_server.plugins import enabled
from dns_server.plugins.cache import CacheCounters
from dns_server.plugins.template import MATCHES, RR_FAILURES, TEMPLATE_FAILURES
from dns_server.protocol.answer import Count
from dns_server.protocol.codes import RCODE_NAMES
from dns_server.protocol.names import zone_text
from dns_server.serving.answer_table import AnswerCacheCounters


def exponential_buckets(start: float, factor: float, count: int) -> tuple[float, ...]:
    """Bucket bounds computed as client_golang's `prometheus.ExponentialBuckets` does (same floats)."""
    bounds = []
    for _ in range(count):
        bounds.append(start)
        start *= factor
    return tuple(bounds)


TIME_BUCKETS = exponential_buckets(0.00025, 2, 16)  # plugin.TimeBuckets: 0.25 ms to 8 s
SLIM_TIME_BUCKETS = exponential_buckets(0.00025, 10, 5)  # plugin.SlimTimeBuckets: 0.25 ms to 2.5 s
SIZE_BUCKETS = (0.0, 100.0, 200.0, 300.0, 400.0, 511.0, 1023.0, 2047.0, 4095.0, 8291.0,
                16e3, 32e3, 48e3, 64e3)  # plugin/metrics/vars/vars.go, request and response sizes
DNS_PROGRAMMING_BUCKETS = exponential_buckets(0.001, 2, 20)  # kubernetes plugin: 1 ms to ~17 minutes
FIRST_BUCKET = TIME_BUCKETS[0]  # the hot path calls `Tally.add_slow` only for queries slower than this

AUTOPATH = "autopath"  # the plugin label of the replies autopath's walk found (its success counter)
DROPPED = "dropped"  # vars.Dropped: the zone of queries that never reached a plugin chain
PROXY_NAME = "forward"  # the proxy_name label of the forward plugin's upstream metrics
SUCCESS, DENIAL = "success", "denial"  # the cache plugin's `type` label

# plugin/metrics/vars/monitor.go: the query types counted under their own name; the rest are "other"
MONITORED_TYPES: dict[int, str] = {getattr(QTYPE, name): name for name in (
    "A", "AAAA", "CNAME", "DNSKEY", "DS", "MX", "NSEC3", "NSEC", "NS", "PTR", "RRSIG", "SOA", "SRV", "TXT",
    "HTTPS", "SVCB", "IXFR", "AXFR", "ANY")}


def type_label(qtype: int) -> str:
    return MONITORED_TYPES.get(qtype, "other")


def rcode_label(rcode: int) -> str:
    """plugin/pkg/rcode.ToString: the mnemonic, or `RCODE<n>` for a value without one."""
    return RCODE_NAMES.get(rcode, f"RCODE{rcode}")


def server_label(host: str, port: int) -> str:
    """The `server` label of a listener: `dns://:53`, `dns://10.0.0.10:53`, `dns://[::1]:53`."""
    return "dns://" + format_address(host, port)


def go_float(value: float) -> str:
    """A bucket bound as client_golang prints it (`strconv.FormatFloat(v, 'g', -1, 64)`).

    Exact for the bounds used here (between 1e-4 and 1e6, where Go's shortest form has no
    exponent), and for +Inf.
    """
    if value == float("inf"):
        return "+Inf"
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


class Tally:
    """Queries that share every label value and both sizes.  Mutated only by the event loop thread.

    The hot path does exactly `t.count += 1; t.seconds += d; if d > FIRST_BUCKET: t.add_slow(d)`.
    """

    __slots__ = ("count", "seconds", "slow")

    def __init__(self) -> None:
        self.count = 0  # queries
        self.seconds = 0.0  # the sum of their durations
        # slow[i]: queries slower than TIME_BUCKETS[0] that fall in bucket i (the last is +Inf; slow[0] stays 0)
        self.slow = [0] * (len(TIME_BUCKETS) + 1)

    def add_slow(self, seconds: float) -> None:
        """Count a query slower than FIRST_BUCKET in its bucket (`count` and `seconds` are not touched)."""
        self.slow[bisect_left(TIME_BUCKETS, seconds)] += 1


@dataclass(frozen=True, slots=True)
class _Series:
    """One tally and the series of each family it adds to, worked out once when it is created."""

    tally: Tally
    where: tuple[str, str, str]  # server, zone, view
    requests: tuple[str, str, str, str, str, str]  # ... proto, family, type
    sized: tuple[str, str, str, str]  # ... proto
    responses: tuple[str, str, str, str, str]  # ... rcode, plugin
    do: bool
    request_size: int
    response_size: int
    counts: tuple[Count, ...]  # the plugins' own counters it adds to (protocol.answer.Count)


_WHERE = ["server", "zone", "view"]
_TEMPLATE_FAILURE = [*_WHERE, "class", "type", "section", "template"]
# The plugins' own counters an answer names (`Answer.counts`): help text and labels, as CoreDNS declares them
PLUGIN_COUNTERS: dict[str, tuple[str, list[str]]] = {
    MATCHES: ("Counter of template regex matches.", [*_WHERE, "class", "type"]),
    TEMPLATE_FAILURES: ("Counter of go template failures.", _TEMPLATE_FAILURE),
    RR_FAILURES: ("Counter of mis-templated RRs.", _TEMPLATE_FAILURE),
}


@dataclass(slots=True)
class _Histogram:
    """Per-bucket counts (the last is +Inf) and the sum, while a scrape adds tallies up."""

    bounds: int
    counts: list[int] = field(init=False)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (self.bounds + 1)

    def add(self, bucket: int, count: int, total: float) -> None:
        self.counts[bucket] += count
        self.total += total


class QueryMetrics:
    """Every Tally of the process, and the per-query metric families built from them at scrape time."""

    def __init__(self) -> None:
        self._tallies: dict[tuple[object, ...], Tally] = {}
        self._series: list[_Series] = []  # append-only, so a scrape can take a copy while queries are counted
        self._lock = threading.Lock()  # scrapes may run at once; they share `_reported`
        self._reported: dict[tuple[str, str, str], list[int]] = {}  # duration buckets, cumulative, as last reported

    def tally(self, server: str, zone: str, view: str, proto: str, family: str, qtype: int, rcode: int,
              plugin: str, do: bool, request_size: int, response_size: int, counts: tuple[Count, ...] = ()) -> Tally:
        """The shared Tally for these label values and sizes (a dict lookup; created on first use).

        `zone` is as printed (`cluster.local.`, `.`, `dropped`), `family` "1" (IPv4) or "2" (IPv6),
        `plugin` the plugin that wrote the reply ("" when the server did), `counts` the plugins' own
        counters the reply adds one to.  Call it on the slow path and keep the Tally: the hot path
        only increments it.
        """
        key = (server, zone, view, proto, family, qtype, rcode, plugin, do, request_size, response_size, counts)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = Tally()
            self._series.append(_Series(
                tally, (server, zone, view), (server, zone, view, proto, family, type_label(qtype)),
                (server, zone, view, proto), (server, zone, view, rcode_label(rcode), plugin), do,
                request_size, response_size, counts))
        return tally

    def collect(self) -> Iterator[Metric]:
        """The `coredns_dns_*` families, from every tally that has counted a query."""
        requests: dict[tuple[str, ...], int] = {}
        do_requests: dict[tuple[str, ...], int] = {}
        responses: dict[tuple[str, ...], int] = {}
        durations: dict[tuple[str, str, str], _Histogram] = {}
        request_sizes: dict[tuple[str, ...], _Histogram] = {}
        response_sizes: dict[tuple[str, ...], _Histogram] = {}
        autopath: dict[tuple[str, ...], int] = {}
        counted: dict[str, dict[tuple[str, ...], int]] = {}  # the plugins' own counters, by family
        for series in self._series[:]:
            tally = series.tally
            slow = tally.slow[:]  # slow buckets before the count: see the module docstring
            seconds = tally.seconds
            count = tally.count
            if not count:
                continue
            requests[series.requests] = requests.get(series.requests, 0) + count
            responses[series.responses] = responses.get(series.responses, 0) + count
            if series.responses[-1] == AUTOPATH:  # the plugin label of a reply the autopath walk found
                autopath[series.where[:1]] = autopath.get(series.where[:1], 0) + count
            server, _, view = series.where
            for name, zone, *labels in series.counts:
                values = counted.setdefault(name, {})
                key = (server, zone, view, *labels)
                values[key] = values.get(key, 0) + count
            if series.do:
                do_requests[series.where] = do_requests.get(series.where, 0) + count
            duration = durations.setdefault(series.where, _Histogram(len(TIME_BUCKETS)))
            duration.counts[0] += count - sum(slow)
            for index, slower in enumerate(slow):
                duration.counts[index] += slower
            duration.total += seconds
            request_sizes.setdefault(series.sized, _Histogram(len(SIZE_BUCKETS))).add(
                bisect_left(SIZE_BUCKETS, series.request_size), count, count * series.request_size)
            response_sizes.setdefault(series.sized, _Histogram(len(SIZE_BUCKETS))).add(
                bisect_left(SIZE_BUCKETS, series.response_size), count, count * series.response_size)

        yield _counters("coredns_dns_requests_total", "Counter of DNS requests made per zone, protocol and family.",
                        [*_WHERE, "proto", "family", "type"], requests)
        yield _histograms("coredns_dns_request_duration_seconds",
                          "Histogram of the time (in seconds) each request took per zone.",
                          _WHERE, TIME_BUCKETS, self._monotonic(durations))
        yield _histograms("coredns_dns_request_size_bytes",
                          "Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol.",
                          [*_WHERE, "proto"], SIZE_BUCKETS, _cumulative(request_sizes))
        yield _counters("coredns_dns_do_requests_total", "Counter of DNS requests with DO bit set per zone.",
                        _WHERE, do_requests)
        yield _histograms("coredns_dns_response_size_bytes", "Size of the returned response in bytes.",
                          [*_WHERE, "proto"], SIZE_BUCKETS, _cumulative(response_sizes))
        yield _counters("coredns_dns_responses_total", "Counter of response status codes.",
                        [*_WHERE, "rcode", "plugin"], responses)
        if autopath:  # a vector CoreDNS shows once it has counted
            yield _counters("coredns_autopath_success_total", "Counter of requests that did autopath.", ["server"],
                            autopath)
        for name, values in counted.items():
            help_text, labels = PLUGIN_COUNTERS[name]
            yield _counters(name, help_text, labels, values)

    def _monotonic(self, durations: dict[tuple[str, str, str], _Histogram]
                   ) -> dict[tuple[str, ...], tuple[list[int], float]]:
        """Cumulative duration buckets, each at least what the previous scrape reported."""
        result: dict[tuple[str, ...], tuple[list[int], float]] = {}
        with self._lock:
            for where, histogram in durations.items():
                buckets = list(accumulate(histogram.counts))
                previous = self._reported.get(where)
                if previous is not None:
                    buckets = [max(now, before) for now, before in zip(buckets, previous)]
                self._reported[where] = buckets
                result[where] = (buckets, histogram.total)
        return result


def _cumulative(histograms: Mapping[tuple[str, ...], _Histogram]) -> dict[tuple[str, ...], tuple[list[int], float]]:
    return {key: (list(accumulate(h.counts)), h.total) for key, h in histograms.items()}


def _counters(name: str, help_text: str, labels: list[str], values: Mapping[tuple[str, ...], int]) -> Metric:
    family = CounterMetricFamily(name, help_text, labels=labels)
    for key in sorted(values):
        family.add_metric(key, values[key])
    return family


def _gauges(name: str, help_text: str, labels: list[str], values: Mapping[tuple[str, ...], float]) -> Metric:
    family = GaugeMetricFamily(name, help_text, labels=labels)
    for key in sorted(values):
        family.add_metric(key, values[key])
    return family


def _histograms(name: str, help_text: str, labels: list[str], bounds: tuple[float, ...],
                values: Mapping[tuple[str, ...], tuple[list[int], float]]) -> Metric:
    family = HistogramMetricFamily(name, help_text, labels=labels)
    bound_texts = [go_float(bound) for bound in bounds] + ["+Inf"]
    for key in sorted(values):
        buckets, total = values[key]
        family.add_metric(key, list(zip(bound_texts, buckets)), total)
    return family


class SourceCounters:
    """The API source's reports as the kubernetes and watch metric families (cold paths only)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def programmed(self, service_kind: str, seconds: float) -> None:
        self._metrics.dns_programming_duration.labels(service_kind).observe(seconds)

    def watch_restarted(self, resource: str) -> None:
        self._metrics.watch_restarts.labels(resource).inc()

    def relisted(self, resource: str) -> None:
        self._metrics.watch_relists.labels(resource).inc()


class ProxyCounters:
    """A forward directive's reports as the proxy and forward metric families (cold paths only)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def request(self, to: str, rcode: int | None, seconds: float) -> None:
        if rcode is not None:  # CoreDNS observes replies only; a failed exchange shows in the errors plugin
            self._metrics.proxy_request_duration.labels(PROXY_NAME, to, rcode_label(rcode)).observe(seconds)

    def health_failure(self, to: str) -> None:
        self._metrics.proxy_healthcheck_failures.labels(PROXY_NAME, to).inc()

    def rejected(self) -> None:
        self._metrics.forward_max_concurrent_rejects.inc()

    def broken(self) -> None:
        self._metrics.forward_healthcheck_broken.inc()


@dataclass(frozen=True, slots=True)
class _CacheReader:
    counters: CacheCounters
    entries: Callable[[], tuple[int, int]]  # success, denial


@dataclass(frozen=True, slots=True)
class _AnswerCacheReader:
    counters: AnswerCacheCounters
    entries: Callable[[], int]


@dataclass(frozen=True, slots=True)
class _SnapshotReader:
    age: Callable[[], float]
    objects: Callable[[], Mapping[str, int]]


class Metrics:
    """Every metric of the process, in `registry` (what each /metrics endpoint serves).

    The cold-path instruments are prometheus_client objects, used as such, e.g.
    `metrics.proxy_request_duration.labels(PROXY_NAME, "10.0.0.1:53", "NOERROR").observe(seconds)`.
    """

    def __init__(self, revision: str = "") -> None:
        self.registry = CollectorRegistry()
        self.queries = QueryMetrics()
        self._instruments = CollectorRegistry()
        on = self._instruments
        Gauge("coredns_build_info", "A metric with a constant '1' value labeled by version, revision, and goversion "
              "from which CoreDNS was built.", ["version", "revision", "goversion"], registry=on).labels(
            dns_server.__version__, revision, "python{}.{}.{}".format(*sys.version_info[:3])).set(1)
        self.plugin_enabled = Gauge(
            "coredns_plugin_enabled", "A metric that indicates whether a plugin is enabled on per server and zone basis.",
            ["server", "zone", "view", "name"], registry=on)
        self.panics = Counter("coredns_panics_total", "A metrics that counts the number of panics.", registry=on)
        # cache: coredns_cache_* come from `cache()`
        # forward, and the proxy it shares with other plugins
        self.forward_healthcheck_broken = Counter(
            "coredns_forward_healthcheck_broken_total",
            "Counter of the number of complete failures of the healthchecks.", registry=on)
        self.forward_max_concurrent_rejects = Counter(
            "coredns_forward_max_concurrent_rejects_total",
            "Counter of the number of queries rejected because the concurrent queries were at maximum.", registry=on)
        self.proxy_request_duration = Histogram(
            "coredns_proxy_request_duration_seconds", "Histogram of the time each request took.",
            ["proxy_name", "to", "rcode"], buckets=TIME_BUCKETS, registry=on)
        self.proxy_healthcheck_failures = Counter(
            "coredns_proxy_healthcheck_failures_total", "Counter of the number of failed healthchecks.",
            ["proxy_name", "to"], registry=on)
        self.proxy_conn_cache_hits = Counter(
            "coredns_proxy_conn_cache_hits_total", "Counter of connection cache hits per upstream and protocol.",
            ["proxy_name", "to", "proto"], registry=on)
        self.proxy_conn_cache_misses = Counter(
            "coredns_proxy_conn_cache_misses_total", "Counter of connection cache misses per upstream and protocol.",
            ["proxy_name", "to", "proto"], registry=on)
        # kubernetes
        self.dns_programming_duration = Histogram(
            "coredns_kubernetes_dns_programming_duration_seconds",
            "Histogram of the time (in seconds) it took to program a dns instance.",
            ["service_kind"], buckets=DNS_PROGRAMMING_BUCKETS, registry=on)
        # health
        self.health_duration = Histogram(
            "coredns_health_request_duration_seconds", "Histogram of the time (in seconds) each request took.",
            buckets=SLIM_TIME_BUCKETS, registry=on)
        self.health_failures = Counter(
            "coredns_health_request_failures_total", "The number of times the health check failed.", registry=on)
        # reload
        self.reload_failed = Counter(
            "coredns_reload_failed_total", "Counter of the number of failed reload attempts.", registry=on)
        self._reload_version = Gauge(
            "coredns_reload_version_info",
            "A metric with a constant '1' value labeled by hash, and value which type of hash generated.",
            ["hash", "value"], registry=on)
        # hosts
        self.hosts_entries = Gauge(
            "coredns_hosts_entries", "The combined number of entries in hosts and Corefile.", ["hostsfile"],
            registry=on)
        self.hosts_reload_timestamp = Gauge(
            "coredns_hosts_reload_timestamp_seconds", "The timestamp of the last reload of hosts file.", registry=on)
        # ours: the Kubernetes watches
        self.watch_restarts = Counter(
            "dns_server_watch_restarts_total", "Watches of a resource started again after they ended or failed.",
            ["resource"], registry=on)
        self.watch_relists = Counter(
            "dns_server_watch_relists_total",
            "Listings of a resource after its first one (the watch expired with 410 Gone, or failed).",
            ["resource"], registry=on)

        self._readers_lock = threading.Lock()
        self._caches: dict[tuple[str, str], _CacheReader] = {}
        self._answer_caches: dict[str, _AnswerCacheReader] = {}
        self._snapshots: dict[str, _SnapshotReader] = {}
        self.registry.register(self)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def set_plugins(self, blocks: Iterable[ServerBlock]) -> None:
        """`coredns_plugin_enabled`: each query-chain plugin of each block with `prometheus`, per listener and zone.

        Replaces what an earlier call set (call it again after a reload).
        """
        self.plugin_enabled.clear()
        for block in blocks:
            if block.setting("prometheus") is None:
                continue
            for key in block.keys:
                for host in block.bind or ("",):
                    for name in enabled(block):
                        self.plugin_enabled.labels(server_label(host, key.port), zone_text(key.zone), "", name).set(1)

    def worker_families(self) -> tuple[Counter, Gauge]:
        """`dns_server_worker_restarts_total` and `dns_server_workers`, for a server with worker processes."""
        restarts = Counter("dns_server_worker_restarts", "Worker processes started again: after one exited unasked "
                           "(reason exited), or after one acknowledged nothing for a while and was killed (hung).",
                           ["reason"], registry=self._instruments)
        for reason in ("exited", "hung"):
            restarts.labels(reason)
        return (restarts,
                Gauge("dns_server_workers", "Worker processes answering DNS.", registry=self._instruments))

    def source(self) -> SourceCounters:
        """What the Kubernetes API source reports (dns_server.cluster.sources.kube.SourceMetrics), into these metrics."""
        return SourceCounters(self)

    def forwarder(self) -> ProxyCounters:
        """What a `forward` directive reports (dns_server.plugins.forward.forwarder.ProxyMetrics), into these metrics."""
        return ProxyCounters(self)

    def set_reload_version(self, sha512: str) -> None:
        """`coredns_reload_version_info{hash="sha512",value=<hex>}`: the Corefile the reload plugin last loaded."""
        self._reload_version.clear()
        self._reload_version.labels("sha512", sha512).set(1)

    def cache(self, server: str, zones: str, entries: Callable[[], tuple[int, int]]) -> CacheCounters:
        """The counters of the `cache` labelled (server, zones); `entries()` gives (success, denial) entries.

        `zones` is the cache's zones as printed, joined with "," (`.`).  Asking again for the same
        labels (after a reload) returns the same counters, so the counts carry on; `entries`
        replaces the earlier one.
        """
        with self._readers_lock:
            known = self._caches.get((server, zones))
            counters = known.counters if known else CacheCounters()
            self._caches[(server, zones)] = _CacheReader(counters, entries)
        return counters

    def answer_cache(self, server: str, entries: Callable[[], int]) -> AnswerCacheCounters:
        """The counters of our answer cache for the listener labelled `server` (same rules as `cache`)."""
        with self._readers_lock:
            known = self._answer_caches.get(server)
            counters = known.counters if known else AnswerCacheCounters()
            self._answer_caches[server] = _AnswerCacheReader(counters, entries)
        return counters

    def snapshot(self, source: str, age: Callable[[], float], objects: Callable[[], Mapping[str, int]]) -> None:
        """Report the cluster data of `source`: seconds since its snapshot was built, and objects per kind."""
        with self._readers_lock:
            self._snapshots[source] = _SnapshotReader(age, objects)

    def collect(self) -> Iterator[Metric]:
        """Called by `registry` when it is scraped: every family that has a sample."""
        with self._readers_lock:
            caches, answer_caches = dict(self._caches), dict(self._answer_caches)
            snapshots = dict(self._snapshots)
        for family in chain(self._instruments.collect(), self.queries.collect(), _cache_families(caches),
                            _answer_cache_families(answer_caches), _snapshot_families(snapshots)):
            # client_golang prints no `_created` samples, and no family before its first series
            family.samples = [sample for sample in family.samples if not sample.name.endswith("_created")]
            if family.samples:
                yield family


def _cache_families(caches: Mapping[tuple[str, str], _CacheReader]) -> list[Metric]:
    """The `coredns_cache_*` families; a series appears once it has counted, as CoreDNS's do."""
    entries: dict[tuple[str, ...], float] = {}
    per_cache: dict[str, dict[tuple[str, ...], int]] = {
        "requests": {}, "misses": {}, "prefetches": {}, "drops": {}, "served_stale": {}}
    per_type: dict[str, dict[tuple[str, ...], int]] = {"hits": {}, "evictions": {}}
    for (server, zones), reader in caches.items():
        counters = reader.counters
        if not counters.requests:
            continue
        success, denial = reader.entries()
        entries[(server, SUCCESS, zones, "")] = success
        entries[(server, DENIAL, zones, "")] = denial
        for name, values in per_cache.items():
            value = getattr(counters, name)
            if value:
                values[(server, zones, "")] = value
        for kind in (SUCCESS, DENIAL):
            for name, values in per_type.items():
                value = getattr(counters, f"{kind}_{name}")
                if value:
                    values[(server, kind, zones, "")] = value
    typed, plain = ["server", "type", "zones", "view"], ["server", "zones", "view"]
    return [
        _gauges("coredns_cache_entries", "The number of elements in the cache.", typed, entries),
        _counters("coredns_cache_requests_total", "The count of cache requests.", plain, per_cache["requests"]),
        _counters("coredns_cache_hits_total", "The count of cache hits.", typed, per_type["hits"]),
        _counters("coredns_cache_misses_total",
                  "The count of cache misses. Deprecated, derive misses from cache hits/requests counters.",
                  plain, per_cache["misses"]),
        _counters("coredns_cache_prefetch_total", "The number of times the cache has prefetched a cached item.",
                  plain, per_cache["prefetches"]),
        _counters("coredns_cache_drops_total",
                  "The number responses that are not cached, because the reply is malformed.",
                  plain, per_cache["drops"]),
        _counters("coredns_cache_served_stale_total", "The number of requests served from stale cache entries.",
                  plain, per_cache["served_stale"]),
        _counters("coredns_cache_evictions_total", "The count of cache evictions.", typed, per_type["evictions"]),
    ]


def _answer_cache_families(caches: Mapping[str, _AnswerCacheReader]) -> Iterator[Metric]:
    yield _gauges("dns_server_answer_cache_entries", "Encoded answers held in the answer cache.", ["server"],
                  {(server,): reader.entries() for server, reader in caches.items()})
    for name, help_text in (("hits", "Queries answered from the answer cache."),
                            ("misses", "Queries the answer cache had no answer for."),
                            ("invalidations", "Cached answers dropped because the cluster data they came from "
                                              "changed."),
                            ("evictions", "Cached answers dropped because the answer cache was full.")):
        yield _counters(f"dns_server_answer_cache_{name}_total", help_text, ["server"],
                        {(server,): getattr(reader.counters, name) for server, reader in caches.items()})


def _snapshot_families(snapshots: Mapping[str, _SnapshotReader]) -> Iterator[Metric]:
    yield _gauges("dns_server_snapshot_age_seconds", "Seconds since the cluster data being served was last updated.",
                  ["source"], {(source,): reader.age() for source, reader in snapshots.items()})
    yield _gauges("dns_server_snapshot_objects", "Objects in the cluster data being served, per kind.",
                  ["source", "kind"], {(source, kind): count for source, reader in snapshots.items()
                                       for kind, count in reader.objects().items()})


# Gauges several processes add up (what each holds); every other gauge is the same in each process,
# or the largest is the one to report (the oldest snapshot), except the start time: the earliest.
SUMMED_GAUGES = frozenset({"coredns_cache_entries", "dns_server_answer_cache_entries", "process_resident_memory_bytes",
                           "process_virtual_memory_bytes", "process_open_fds"})
EARLIEST_GAUGES = frozenset({"process_start_time_seconds"})
COUNTING_TYPES = frozenset({"counter", "histogram", "summary"})


def merge_families(processes: Iterable[Iterable[Metric]]) -> list[Metric]:
    """The families of several processes as one process would report them.

    Counters and histograms are summed series by series (same name, same labels), as are the
    gauges of what each process holds (`SUMMED_GAUGES`); the other gauges take the largest value
    (`coredns_build_info` and `coredns_plugin_enabled` stay 1), the start time the earliest.
    """
    merged: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for families in processes:
        for family in families:
            if family.name not in merged:
                merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                values[family.name] = {}
            series = values[family.name]
            combine = _combiner(family)
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                series[key] = combine(series[key], sample.value) if key in series else sample.value
    for name, family in merged.items():
        family.samples = [Sample(sample_name, dict(labels), value) for (sample_name, labels), value in values[name].items()]
    return list(merged.values())


def counting_only(families: Iterable[Metric]) -> list[Metric]:
    """The counters and histograms of `families`: what a process that is gone still adds to the sums."""
    return [family for family in families if family.type in COUNTING_TYPES]


def _combiner(family: Metric) -> Callable[[float, float], float]:
    if family.type in COUNTING_TYPES or family.name in SUMMED_GAUGES:
        return lambda total, value: total + value
    return min if family.name in EARLIEST_GAUGES else max


def requests_of(families: Iterable[Metric]) -> float:
    """The DNS requests a process counted (every series of `coredns_dns_requests_total`)."""
    return sum(sample.value for family in families if family.name == "coredns_dns_requests"
               for sample in family.samples)
