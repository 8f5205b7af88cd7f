"""Worker processes (`--workers 2`): the real server process, its real forked workers sharing the
port (SO_REUSEPORT), queried over UDP by dnspython and scraped over HTTP.

A client cannot choose which worker answers: the kernel picks one by the client's address and
port.  So these tests ask from many source ports (each dnspython query, or each of 40 sockets
kept open, has its own) and read `dns_server_worker_requests_total{worker}` from /metrics to see
that every worker answered some of them.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import yaml

from tests.integration.server import ServerProcess, free_port, wait_for
from tests.kube_api_standin import KubeApiStandIn, objects_of, service

DEADLINE = 20.0  # generous: a loaded machine is slow, not the server wrong
NAME = "kubernetes.default.svc.cluster.local"


def workers_server(fixtures: Path, *flags: str) -> tuple[ServerProcess, int, int]:
    """A server with two workers over `fixtures`, its /metrics and /ready ports."""
    metrics, ready = free_port(), free_port()
    server = ServerProcess("--fixtures", str(fixtures), "--workers", "2", "--metrics", f"127.0.0.1:{metrics}",
                           "--ready", f"127.0.0.1:{ready}", *flags)
    return server, metrics, ready


def fetch(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def samples(port: int, family: str) -> dict[str, float]:
    """The samples of one family on /metrics, by their label text."""
    found = {}
    for line in fetch(port, "/metrics")[1].splitlines():
        match = re.fullmatch(rf"{family}(\{{.*\}})? (\S+)", line)
        if match:
            found[match.group(1) or ""] = float(match.group(2))
    return found


def requests_total(port: int) -> float:
    return sum(samples(port, "coredns_dns_requests_total").values())


def worker_pids(server: ServerProcess) -> list[int]:
    assert server.process is not None
    pid = server.process.pid
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_both_workers_answer_and_metrics_add_them_up(zones_copy: Path) -> None:
    """K queries from K source ports: the summed coredns_dns_requests_total grows by exactly K, and
    each of the two workers answered some of them."""
    server, metrics, ready = workers_server(zones_copy)
    with server:
        wait_for(lambda: fetch(ready, "/ready") == (200, "OK"), DEADLINE, "/ready to say OK")
        assert len(worker_pids(server)) == 2
        assert samples(metrics, "dns_server_workers") == {"": 2.0}
        before = requests_total(metrics)
        count = 200
        for _ in range(count):
            reply = server.ask(NAME)
            assert reply.rcode() == dns.rcode.NOERROR and reply.answer
        assert requests_total(metrics) - before == count
        per_worker = samples(metrics, "dns_server_worker_requests_total")
        assert set(per_worker) == {'{worker="0"}', '{worker="1"}'}
        assert all(value > 0 for value in per_worker.values()), per_worker
        assert samples(metrics, "coredns_build_info") and set(samples(metrics, "coredns_build_info").values()) == {1.0}


def test_a_fixture_change_reaches_every_worker(zones_copy: Path) -> None:
    """A service added to the fixture files: every one of 40 client sockets (spread over both
    workers by their ports) gets its address before the deadline, and then never the old NXDOMAIN."""
    server, metrics, _ = workers_server(zones_copy)
    name = "late.default.svc.cluster.local"
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(40)]
    try:
        with server:
            for client in clients:
                client.bind(("127.0.0.1", 0))
                assert ask_from(client, server, name).rcode() == dns.rcode.NXDOMAIN
            per_worker = samples(metrics, "dns_server_worker_requests_total")
            assert all(value > 0 for value in per_worker.values()), per_worker
            (zones_copy / "late.yaml").write_text(
                "apiVersion: v1\nkind: Service\nmetadata: {name: late, namespace: default}\n"
                "spec: {clusterIP: 10.96.77.7, ports: [{name: http, port: 80, protocol: TCP}]}\n")
            for client in clients:
                wait_for(lambda: bool(ask_from(client, server, name).answer), DEADLINE,
                         f"{name} from port {client.getsockname()[1]}")
            assert all(ask_from(client, server, name).answer[0][0].address == "10.96.77.7" for client in clients)
    finally:
        for client in clients:
            client.close()


def ask_from(client: socket.socket, server: ServerProcess, name: str) -> dns.message.Message:
    """A query sent from `client`'s own port (the kernel sends its replies to the same worker's socket)."""
    query = dns.message.make_query(name, "A")
    dns.query.send_udp(client, query, (server.host, server.port))
    return dns.query.receive_udp(client, (server.host, server.port), expiration=dns.query._compute_times(5.0)[1],
                                 query=query)[0]


class Asker:
    """Asks over and over from a thread, each query from a new socket; keeps the addresses
    answered, counts the unanswered."""

    def __init__(self, server: ServerProcess, name: str = NAME) -> None:
        self.server = server
        self.name = name
        self.answers: list[str] = []
        self.lost = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def answered(self) -> int:
        return len(self.answers)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                reply = self.server.ask(self.name, timeout=1.0)
            except dns.exception.Timeout:
                self.lost += 1
                continue
            self.answers.append(",".join(rr.to_text() for rrset in reply.answer for rr in rrset))


def test_a_killed_worker_is_started_again_and_no_query_is_lost(zones_copy: Path) -> None:
    """kill -9 of one worker while a client asks without pause: a log line, the restart counter, a
    new worker, and no query lost beyond the one or two in flight to the killed one."""
    server, metrics, _ = workers_server(zones_copy)
    with server:
        asker = Asker(server)
        asker.thread.start()
        wait_for(lambda: asker.answered > 50, DEADLINE, "answers before the kill")
        victim = worker_pids(server)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: any(f"(pid {victim}) was killed by signal 9 (SIGKILL): starting it again" in line
                             for line in server.log_lines("[ERROR]")), DEADLINE, "the restart's log line")
        wait_for(lambda: len(worker_pids(server)) == 2 and victim not in worker_pids(server), DEADLINE,
                 "a new worker")
        wait_for(lambda: samples(metrics, "dns_server_workers") == {"": 2.0}, DEADLINE, "two workers again")
        answered = asker.answered
        wait_for(lambda: asker.answered > answered + 50, DEADLINE, "answers after the restart")
        asker.stop.set()
        asker.thread.join()
        assert samples(metrics, "dns_server_worker_restarts_total") == {'{reason="exited"}': 1.0,
                                                                       '{reason="hung"}': 0.0}
        assert asker.lost <= 2, f"{asker.lost} queries lost, {asker.answered} answered"


def test_a_stopped_worker_is_found_hung_killed_and_started_again(zones_copy: Path) -> None:
    """SIGSTOP of one worker while a client asks without pause: it acknowledges nothing (batches,
    pings), so /ready says 503, then the supervisor logs it as hung, counts it, kills it and forks
    a new one, and both workers answer queries again."""
    server, metrics, ready = workers_server(zones_copy)
    with server:
        wait_for(lambda: fetch(ready, "/ready") == (200, "OK"), DEADLINE, "/ready to say OK")
        asker = Asker(server)
        asker.thread.start()
        wait_for(lambda: asker.answered > 50, DEADLINE, "answers before the stop")
        victim = worker_pids(server)[1]
        os.kill(victim, signal.SIGSTOP)
        try:
            wait_for(lambda: fetch(ready, "/ready")[0] == 503, DEADLINE, "/ready to say 503")
            wait_for(lambda: any(f"(pid {victim}) has acknowledged nothing for" in line
                                 for line in server.log_lines("[ERROR]")), DEADLINE, "the hung worker's log line")
            wait_for(lambda: len(worker_pids(server)) == 2 and victim not in worker_pids(server), DEADLINE,
                     "a new worker")
        finally:
            if not gone(victim):
                os.kill(victim, signal.SIGCONT)
        wait_for(lambda: fetch(ready, "/ready") == (200, "OK"), DEADLINE, "/ready to say OK again")
        before = samples(metrics, "dns_server_worker_requests_total")
        wait_for(lambda: all(count > before[worker]
                             for worker, count in samples(metrics, "dns_server_worker_requests_total").items()),
                 DEADLINE, "both workers to answer")
        asker.stop.set()
        asker.thread.join()
        assert samples(metrics, "dns_server_worker_restarts_total") == {'{reason="exited"}': 0.0,
                                                                       '{reason="hung"}': 1.0}
        assert not [line for line in server.log_lines("[ERROR]") if "starting it again" in line
                    and "has acknowledged nothing" not in line]  # logged once, as hung


def test_sigterm_stops_every_worker_after_the_lameduck(zones_copy: Path) -> None:
    """SIGTERM: the supervisor's one shutdown line, DNS answers through the lameduck, then the
    supervisor and both workers are gone, exit status 0, without a traceback."""
    health = free_port()
    server, _, ready = workers_server(zones_copy, "--health", f"127.0.0.1:{health}", "--lameduck", "2s")
    server.start()
    try:
        pids = worker_pids(server)
        server.send_signal(signal.SIGTERM)
        wait_for(lambda: fetch(ready, "/ready") == (503, "Shutting down"), DEADLINE, "/ready to say Shutting down")
        assert server.ask(NAME).answer  # still answering in the lameduck
        assert server.wait(DEADLINE) == 0
        wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), DEADLINE, "the workers to be gone")
        assert len(server.log_lines("[INFO] SIGTERM: Shutting down servers then terminating")) == 1
        warnings = server.log_lines("[WARNING]")
        assert not [line for line in warnings if "after the lameduck" in line], warnings  # they stopped unasked
        assert "Traceback" not in server.log()  # a worker's loop restored a wakeup fd it had not set
    finally:
        server.stop()


def test_a_reload_starts_new_workers_beside_the_old_ones(tmp_path: Path) -> None:
    """`multisocket 2` and SIGUSR1 after the Corefile changed: two new workers answer with the new
    configuration, the old two are gone, and a client asking all along lost at most the queries in
    flight to an old worker's socket as it closed."""
    corefile = "reload.test {\n    multisocket 2\n    hosts {\n        ADDRESS www.reload.test\n    }\n}\n"
    server = ServerProcess.from_corefile(tmp_path, corefile.replace("ADDRESS", "10.11.0.1"),
                                         ready_name="www.reload.test", ready_type="A")
    with server:
        old = worker_pids(server)
        assert len(old) == 2
        asker = Asker(server, "www.reload.test")
        asker.thread.start()
        wait_for(lambda: asker.answered > 20, DEADLINE, "answers before the reload")
        (tmp_path / "Corefile").write_text(corefile.replace("ADDRESS", "10.11.0.2"))
        server.send_signal(signal.SIGUSR1)
        wait_for(lambda: len(worker_pids(server)) == 2 and not set(old) & set(worker_pids(server)), DEADLINE,
                 "two new workers in place of the old ones")
        settled = asker.answered
        wait_for(lambda: asker.answered > settled + 50, DEADLINE, "answers after the reload")
        asker.stop.set()
        asker.thread.join()
        assert set(asker.answers[:20]) == {"10.11.0.1"} and set(asker.answers[settled:]) == {"10.11.0.2"}
        assert asker.lost <= 2, f"{asker.lost} queries lost, {asker.answered} answered"
        assert "[INFO] Reloading complete" in server.log().splitlines()


def test_one_set_of_watches_feeds_every_worker(tmp_path: Path, zones_copy: Path) -> None:
    """The API source (stand-in: tests/kube_api_standin.py, kube-apiserver's list/watch protocol)
    with two workers: each kind is listed and watched once, as by one process, and every change of
    a service's address reaches the 40 client sockets spread over both workers.  Prints the time
    from each change to the last socket answering it (not asserted: the machine is shared)."""
    api = KubeApiStandIn(bookmark_interval=3600).start()
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(40)]
    try:
        api.load(objects_of(d for f in sorted(zones_copy.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())))
        metrics = free_port()
        server = ServerProcess("--kubeconfig", str(api.write_kubeconfig(tmp_path / "kubeconfig")), "--workers", "2",
                               "--metrics", f"127.0.0.1:{metrics}")
        with server:
            name = "moving.default.svc.cluster.local"
            for client in clients:
                client.bind(("127.0.0.1", 0))
            delays = []
            for step in range(1, 11):
                address = f"10.96.90.{step}"
                changed = time.monotonic()
                api.apply(service("default", "moving", address))
                for client in clients:
                    wait_for(lambda: [rr.to_text() for rrset in ask_from(client, server, name).answer for rr in rrset]
                             == [address], DEADLINE, f"{address} from port {client.getsockname()[1]}")
                delays.append(time.monotonic() - changed)
            assert all(value > 0 for value in samples(metrics, "dns_server_worker_requests_total").values())
            assert [len(api.lists(kind)) for kind in ("Namespace", "Service", "EndpointSlice")] == [1, 1, 1]
            assert [len(api.watches(kind)) for kind in ("Namespace", "Service", "EndpointSlice")] == [1, 1, 1]
        print(f"change -> every socket answering it: max {max(delays) * 1000:.0f} ms over {len(delays)} changes")
    finally:
        for client in clients:
            client.close()
        api.stop()


def test_a_busy_port_stops_the_start_with_one_line(zones_copy: Path, tmp_path: Path) -> None:
    """A worker that cannot bind: the supervisor exits 1 with the worker's one-line reason, as one
    process would, and leaves no worker behind."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        server = ServerProcess("--fixtures", str(zones_copy), "--workers", "2", port=port,
                               log_path=tmp_path / "server.log")
        assert server.refused_start(DEADLINE) == 1
    assert server.log().splitlines()[-1] == f"dns-server: error: cannot listen on 127.0.0.1:{port}: Address already in use"


def gone(pid: int) -> bool:
    """Whether a process has exited (a zombie waiting for its new parent to reap it counts as exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_workers_stop_when_their_supervisor_is_killed(zones_copy: Path) -> None:
    """kill -9 of the supervisor: its workers see their channel close and exit, none is left answering."""
    server, _, _ = workers_server(zones_copy)
    with server:
        pids = worker_pids(server)
        server.send_signal(signal.SIGKILL)
        wait_for(lambda: all(gone(pid) for pid in pids), DEADLINE, "the workers to exit")


def test_a_reload_cannot_add_workers_to_a_one_process_server(tmp_path: Path) -> None:
    """Started with one worker (one process, no supervisor), a Corefile asking for two is a failed
    reload: logged, and the running configuration keeps answering."""
    corefile = "reload.test {\n    MULTISOCKET\n    hosts {\n        10.11.0.1 www.reload.test\n    }\n}\n"
    server = ServerProcess.from_corefile(tmp_path, corefile.replace("MULTISOCKET", "whoami"),
                                         ready_name="www.reload.test", ready_type="A")
    with server:
        assert worker_pids(server) == []
        (tmp_path / "Corefile").write_text(corefile.replace("MULTISOCKET", "multisocket 2"))
        server.send_signal(signal.SIGUSR1)
        failed = ("[ERROR] plugin/reload: Corefile changed but reload failed: this server was started with one "
                  "worker: it cannot start 2 on reload (restart it)")
        wait_for(lambda: failed in server.log().splitlines(), DEADLINE, "the reload to fail")
        assert server.ask("www.reload.test").answer[0][0].address == "10.11.0.1"


def test_sigterm_while_the_workers_start_stops_them(zones_copy: Path) -> None:
    """SIGTERM as soon as the workers exist, before they may have set up their signal handling:
    the signal waits for them (blocked from the fork on), so each stops of itself, not at the
    supervisor's deadline."""
    server, _, _ = workers_server(zones_copy)
    server.launch()
    try:
        wait_for(lambda: len(worker_pids(server)) == 2, DEADLINE, "two workers")
        server.send_signal(signal.SIGTERM)
        assert server.wait(DEADLINE) == 0
        warnings = server.log_lines("[WARNING]")
        assert not [line for line in warnings if "after the lameduck" in line], warnings
    finally:
        server.stop()
