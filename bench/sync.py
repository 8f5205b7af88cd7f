"""Sync benchmark: the server kept in sync with a large cluster through the Kubernetes API.

Runs the real server process (`python -m dns_server --kubeconfig FILE`) against the API stand-in
(tests/kube_api_standin.py: paged lists, chunked watch streams) holding 10,000 services, 10,000
EndpointSlices of 5 endpoints each (50,000 endpoints) and 50 namespaces, with the metadata real
objects carry (labels, annotations, managedFields), and prints, per round and as medians:

- ready: seconds from starting the process until a missing cluster name is NXDOMAIN rather than
  SERVFAIL (every resource listed and applied), and the source's own "initial sync" time;
- VmHWM: the server's peak resident memory after the sync (and after the event runs);
- event -> answer: from the moment the stand-in writes a watch event changing a service's
  address to the moment the server first answers with the new address, p50/p99 over N events;
- query latency p50/p99 (sequential queries paced at 2,000/s from a separate process, so the
  stand-in's work in this process does not skew the client) while idle and while 1,000 events/s
  arrive.

Targets (issue 4): ready within 10 s, peak RSS under 400 MB, event -> answer p99 under 200 ms.
The machine is shared and has 2 cores; the server, the stand-in and the query client compete
for them, so quote the medians over rounds.

    .venv/bin/python bench/sync.py                  # 3 rounds, 1,000 events per round
    .venv/bin/python bench/sync.py --rounds 5 --events 500 --services 2000
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dns.message  # noqa: E402
import dns.rcode  # noqa: E402

from tests.kube_api_standin import KubeApiStandIn  # noqa: E402

ZONE = "cluster.local"
PROBE_RATE = 2000  # queries per second from the latency probe
PROBE_SECONDS = 4.0
EVENT_RATE = 1000  # events per second during the loaded probe
READY_DEADLINE = 120.0


# -- the cluster ------------------------------------------------------------------------------------------
def _meta(kind: str, namespace: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
    """Metadata shaped like a real object's: what the server must parse and throw away."""
    return {"name": name, "namespace": namespace, "labels": labels,
            "uid": f"{abs(hash((kind, namespace, name))):032x}"[:32],
            "creationTimestamp": "2024-05-01T10:00:00Z",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                            '{"apiVersion":"v1","kind":"%s","metadata":{"name":"%s","namespace":"%s"}}'
                            % (kind, name, namespace)},
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update",
                               "apiVersion": "v1", "time": "2024-05-01T10:00:00Z", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                                            "f:spec": {"f:ports": {".": {}}, "f:selector": {}}}}]}


def cluster_ip(i: int) -> str:
    return f"10.96.{i // 250}.{i % 250 + 1}"


def new_ip(generation: int) -> str:
    """A different address for every change, so each event changes an answer."""
    return f"10.{100 + generation // 62500 % 100}.{generation // 250 % 250}.{generation % 250 + 1}"


def build_cluster(services: int, namespaces: int, endpoints: int) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = [
        {"kind": "Namespace", "metadata": {"name": f"ns-{n}", "labels": {"kubernetes.io/metadata.name": f"ns-{n}"}},
         "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}} for n in range(namespaces)]
    for i in range(services):
        ns, name = f"ns-{i % namespaces}", f"svc-{i}"
        objects.append(service_object(i, ns, name, cluster_ip(i)))
        objects.append({
            "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": _meta("EndpointSlice", ns, f"{name}-x7k2p",
                              {"kubernetes.io/service-name": name, "app": name,
                               "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}),
            "endpoints": [{"addresses": [f"10.{200 + (i * endpoints + e) // 62500}.{(i * endpoints + e) // 250 % 250}."
                                         f"{(i * endpoints + e) % 250 + 1}"],
                           "conditions": {"ready": True, "serving": True, "terminating": False},
                           "nodeName": f"node-{e}", "zone": "zone-a",
                           "targetRef": {"kind": "Pod", "namespace": ns, "name": f"{name}-{e}",
                                         "uid": f"{i:08x}-{e:04x}-0000-0000-000000000000"}}
                          for e in range(endpoints)],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
    return objects


def service_object(i: int, namespace: str, name: str, address: str) -> dict[str, Any]:
    return {"kind": "Service", "metadata": _meta("Service", namespace, name, {"app": name}),
            "spec": {"type": "ClusterIP", "clusterIP": address, "clusterIPs": [address],
                     "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None",
                     "internalTrafficPolicy": "Cluster", "selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]},
            "status": {"loadBalancer": {}}}


# -- the server -------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ask(sock: socket.socket, port: int, name: str, timeout: float = 1.0) -> dns.message.Message | None:
    query = dns.message.make_query(name, "A")
    sock.settimeout(timeout)
    sock.sendto(query.to_wire(), ("127.0.0.1", port))
    try:
        while True:
            data = sock.recv(4096)
            reply = dns.message.from_wire(data)
            if reply.id == query.id:
                return reply
    except socket.timeout:
        return None


def memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# -- the latency probe (a separate process) ---------------------------------------------------------------
def probe(port: int, names: list[str], seconds: float, rate: int, results: Any) -> None:
    """Sequential queries paced at `rate`/s; puts the sorted round-trip times (seconds) in `results`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1.0)
    wires = [dns.message.make_query(n, "A").to_wire() for n in names]
    rtts: list[float] = []
    lost = 0
    interval = 1.0 / rate
    start = time.perf_counter()
    next_at = start
    i = 0
    while time.perf_counter() - start < seconds:
        wire = wires[i % len(wires)]
        i += 1
        sent = time.perf_counter()
        sock.sendto(wire, ("127.0.0.1", port))
        try:
            while sock.recv(4096)[:2] != wire[:2]:
                pass
            rtts.append(time.perf_counter() - sent)
        except socket.timeout:
            lost += 1
        next_at += interval
        pause = next_at - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    results.put((sorted(rtts), lost))


def run_probe(port: int, names: list[str]) -> tuple[list[float], int]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=probe, args=(port, names, PROBE_SECONDS, PROBE_RATE, results))
    process.start()
    rtts, lost = results.get(timeout=PROBE_SECONDS + 60)
    process.join()
    return rtts, lost


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


# -- one round --------------------------------------------------------------------------------------------
def one_round(api: KubeApiStandIn, kubeconfig: Path, args: argparse.Namespace,
              generation: list[int]) -> dict[str, float]:
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="sync-bench-", suffix=".log", delete=False)
    started = time.monotonic()
    server = subprocess.Popen([sys.executable, "-m", "dns_server", "--kubeconfig", str(kubeconfig),
                               "--listen", f"127.0.0.1:{port}", "--log-level", "info"],
                              cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    result: dict[str, float] = {}
    try:
        missing = f"no-such-service.ns-0.svc.{ZONE}"
        while True:
            if server.poll() is not None:
                raise SystemExit(f"server exited: {Path(log.name).read_text()}")
            reply = ask(sock, port, missing, timeout=0.2)
            if reply is not None and reply.rcode() == dns.rcode.NXDOMAIN:
                break
            if time.monotonic() - started > READY_DEADLINE:
                raise SystemExit("not ready within the deadline")
            time.sleep(0.02)
        result["ready_s"] = time.monotonic() - started
        synced_line = re.search(r"initial sync complete in ([\d.]+) s", Path(log.name).read_text())
        result["sync_s"] = float(synced_line.group(1)) if synced_line else float("nan")
        result["hwm_sync_mb"] = memory_kb(server.pid, "VmHWM") / 1024
        last = args.services - 1
        check = ask(sock, port, f"svc-{last}.ns-{last % args.namespaces}.svc.{ZONE}")
        assert check is not None and check.answer, "the last service is not served"

        # event -> answer: change one service's address, poll until the new address is served
        generation[0] += 1
        delays = []
        rng = random.Random(generation[0])
        for _ in range(args.events):
            i = rng.randrange(args.services)
            ns, name = f"ns-{i % args.namespaces}", f"svc-{i}"
            generation[0] += 1
            address = new_ip(generation[0])
            version = api.apply(service_object(i, ns, name, address))
            qname = f"{name}.{ns}.svc.{ZONE}"
            deadline = time.monotonic() + 5.0
            while True:
                reply = ask(sock, port, qname)
                if reply is not None and reply.answer and reply.answer[0][0].to_text() == address:
                    seen = time.monotonic()
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"{qname} never showed {address}")
                time.sleep(0.001)
            delays.append(seen - api.sent_at[str(version)])
        result["event_p50_ms"] = percentile(delays, 50) * 1000
        result["event_p99_ms"] = percentile(delays, 99) * 1000
        result["event_max_ms"] = max(delays) * 1000

        # query latency, idle and while EVENT_RATE events/s arrive
        names = [f"svc-{i}.ns-{i % args.namespaces}.svc.{ZONE}" for i in range(0, args.services, 97)]
        names += [f"svc-{i}.ns-{i % args.namespaces}.svc.{ZONE}.ns-0.svc.{ZONE}" for i in range(0, 200, 7)]
        rtts, lost = run_probe(port, names)
        result.update(idle_p50_ms=percentile(rtts, 50) * 1000, idle_p99_ms=percentile(rtts, 99) * 1000,
                      idle_max_ms=rtts[-1] * 1000, idle_lost=lost)
        stop = threading.Event()
        applied = [0]

        def churn() -> None:
            tick = 0.01
            per_tick = int(EVENT_RATE * tick)
            next_at = time.monotonic()
            while not stop.is_set():
                batch = []
                for _ in range(per_tick):
                    i = rng.randrange(args.services)
                    generation[0] += 1
                    batch.append(service_object(i, f"ns-{i % args.namespaces}", f"svc-{i}",
                                                new_ip(generation[0])))
                api.apply(*batch)
                applied[0] += len(batch)
                next_at += tick
                time.sleep(max(0.0, next_at - time.monotonic()))

        hwm_before = memory_kb(server.pid, "VmHWM")
        churner = threading.Thread(target=churn, daemon=True)
        churn_started = time.monotonic()
        churner.start()
        rtts, lost = run_probe(port, names)
        stop.set()
        churner.join()
        churn_seconds = time.monotonic() - churn_started
        result.update(load_p50_ms=percentile(rtts, 50) * 1000, load_p99_ms=percentile(rtts, 99) * 1000,
                      load_max_ms=rtts[-1] * 1000, load_lost=lost, events_per_s=applied[0] / churn_seconds)
        result["hwm_end_mb"] = max(hwm_before, memory_kb(server.pid, "VmHWM")) / 1024
    finally:
        sock.close()
        server.terminate()
        server.wait(timeout=15)
        Path(log.name).unlink()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--endpoints", type=int, default=5, help="endpoints per EndpointSlice")
    parser.add_argument("--events", type=int, default=1000, help="events timed for event -> answer")
    args = parser.parse_args()

    api = KubeApiStandIn(bookmark_interval=60).start()
    built = time.monotonic()
    api.load(build_cluster(args.services, args.namespaces, args.endpoints))
    print(f"sync benchmark: {args.services} services, {args.services} endpoint slices "
          f"({args.services * args.endpoints} endpoints), {args.namespaces} namespaces; {args.rounds} rounds, "
          f"{args.events} timed events; stand-in loaded in {time.monotonic() - built:.1f} s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = api.write_kubeconfig(Path(tmp) / "kubeconfig")
        generation = [0]
        rounds = []
        for number in range(1, args.rounds + 1):
            r = one_round(api, kubeconfig, args, generation)
            rounds.append(r)
            print(f"round {number}: ready {r['ready_s']:.2f} s (source sync {r['sync_s']:.2f} s) | "
                  f"VmHWM {r['hwm_sync_mb']:.0f} MB after sync, {r['hwm_end_mb']:.0f} MB at end | "
                  f"event->answer p50 {r['event_p50_ms']:.1f} ms p99 {r['event_p99_ms']:.1f} ms "
                  f"max {r['event_max_ms']:.1f} ms | queries idle p50 {r['idle_p50_ms']:.3f} ms "
                  f"p99 {r['idle_p99_ms']:.3f} ms max {r['idle_max_ms']:.1f} ms, at {r['events_per_s']:.0f} events/s "
                  f"p50 {r['load_p50_ms']:.3f} ms p99 {r['load_p99_ms']:.3f} ms max {r['load_max_ms']:.1f} ms "
                  f"(lost {r['idle_lost']:.0f}/{r['load_lost']:.0f})", flush=True)
    api.stop()

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    print(f"median over {len(rounds)} rounds:")
    print(f"  time to ready           {median('ready_s'):7.2f} s   (target <= 10 s: "
          f"{'met' if median('ready_s') <= 10 else 'MISSED'}); source sync alone {median('sync_s'):.2f} s")
    print(f"  peak RSS after sync     {median('hwm_sync_mb'):7.0f} MB  (target < 400 MB: "
          f"{'met' if median('hwm_sync_mb') < 400 else 'MISSED'}); after the event runs {median('hwm_end_mb'):.0f} MB")
    print(f"  event -> answer p50     {median('event_p50_ms'):7.1f} ms")
    print(f"  event -> answer p99     {median('event_p99_ms'):7.1f} ms  (target < 200 ms: "
          f"{'met' if median('event_p99_ms') < 200 else 'MISSED'})")
    print(f"  query latency idle      p50 {median('idle_p50_ms'):.3f} ms, p99 {median('idle_p99_ms'):.3f} ms")
    print(f"  query latency at {median('events_per_s'):.0f} events/s  p50 {median('load_p50_ms'):.3f} ms, "
          f"p99 {median('load_p99_ms'):.3f} ms  (p99 ratio loaded/idle "
          f"{median('load_p99_ms') / median('idle_p99_ms'):.1f}x)")


if __name__ == "__main__":
    main()
