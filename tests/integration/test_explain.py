"""`dns-server explain` as a user runs it, on the bundled zones/, and `/explain` on a running server.

The command's reply is checked against what the real server process, started on the same data,
answers over UDP; the HTTP endpoint is asked with urllib as any HTTP client would.  The API source is
read from tests/kube_api_standin.py (kube-apiserver's paged list protocol over real HTTP, through a
kubeconfig), the most faithful stand-in for an API server these machines can run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import dns.message
import dns.rcode
import pytest

from dns_server.cluster.sources.fixtures import parse_manifest
from tests.integration.server import REPO, ServerProcess, free_port, texts, wait_for
from tests.kube_api_standin import KubeApiStandIn

FLAGS = ["--fixtures", "zones", "--upstream", "192.0.2.1"]
NOT_READY = "postgres-2.postgres.data.svc.cluster.local"


def explain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dns_server", "explain", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    explain_port = free_port()
    with ServerProcess(*FLAGS, "--explain-http", str(explain_port)) as running:
        running.explain_port = explain_port  # type: ignore[attr-defined]
        yield running


def test_the_command_explains_a_not_ready_endpoint_and_gives_the_servers_reply(server: ServerProcess) -> None:
    result = explain(NOT_READY, *FLAGS)
    assert result.returncode == 0, result.stderr
    assert "kubernetes: postgres-2.postgres.data.svc.cluster.local. A: answered NXDOMAIN" in result.stdout
    assert ("endpoint 10.244.3.12 (postgres-2) of EndpointSlice data/postgres-q8w2n: not ready "
            "(conditions.ready is false)") in result.stdout
    assert "ready=false serving=false terminating=false hostname=postgres-2" in result.stdout
    as_json = json.loads(explain(NOT_READY, "--json", *FLAGS).stdout)
    reply = dns.message.from_text(as_json["reply"]["dig"])
    asked = server.ask(NOT_READY, "A")
    assert as_json["reply"]["rcode"] == "NXDOMAIN" == dns.rcode.to_text(asked.rcode())
    assert [(rrset.name, rrset.rdtype, rrset.ttl, rrset[0].mname) for rrset in reply.authority] == \
        [(rrset.name, rrset.rdtype, rrset.ttl, rrset[0].mname) for rrset in asked.authority]  # the serial: read time
    assert texts(reply.answer) == texts(asked.answer) == set()


def test_the_command_reads_the_corefile_and_refuses_bad_input() -> None:
    result = explain("-conf", "Corefile.local", "www.example.org.shop.svc.cluster.local", "AAAA", "--json")
    assert result.returncode == 0, result.stderr
    as_json = json.loads(result.stdout)
    assert as_json["block"] == {"keys": [".:5353"], "location": "Corefile.local:2"}
    assert as_json["reading"]["search_path_miss"] == {"name": "www.example.org.",
                                                      "search_domain": "shop.svc.cluster.local."}
    bad = explain("example.org", "NOTATYPE", *FLAGS)
    assert bad.returncode == 2 and "NOTATYPE: not a record type" in bad.stderr
    server_only = explain("example.org", "--explain-http", "8080", *FLAGS)
    assert server_only.returncode == 2 and "--explain-http: the server's, not explain's" in server_only.stderr
    missing = explain("example.org", "--fixtures", "no/such/dir")
    assert missing.returncode == 1 and missing.stderr.startswith("dns-server explain: error: ")


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_explain_over_http_when_enabled(server: ServerProcess) -> None:
    port: int = server.explain_port  # type: ignore[attr-defined]
    status, body = get(port, f"/explain?name={NOT_READY}")
    assert status == 200
    as_json = json.loads(body)
    assert as_json["reply"]["rcode"] == "NXDOMAIN"
    assert "not ready (conditions.ready is false)" in [left["reason"] for left in as_json["objects"]["left_out"]]
    status, text = get(port, "/explain?name=frontend.shop.svc.cluster.local&type=A&format=text")
    assert status == 200 and "answered NOERROR with 1 record" in text
    assert get(port, "/explain?type=A")[0] == 400


def test_explain_over_http_is_off_by_default(tmp_path: object) -> None:
    health = free_port()
    with ServerProcess(*FLAGS, "--health", f"127.0.0.1:{health}") as running:
        wait_for(lambda: get(health, "/health")[0] == 200, 10, "/health to answer")
        assert get(health, f"/explain?name={NOT_READY}") == (404, "404 page not found\n")
        assert running.ask("frontend.shop.svc.cluster.local").rcode() == dns.rcode.NOERROR


def test_the_command_lists_the_api_once_and_names_what_the_label_selector_left_out(tmp_path: Path) -> None:
    api = KubeApiStandIn().start()
    try:
        api.load(parse_manifest(REPO / "tests" / "data" / "explain" / "cluster.yaml"))
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        corefile = tmp_path / "Corefile"
        corefile.write_text(f".:5353 {{\n    kubernetes cluster.local {{\n        kubeconfig {kubeconfig}\n"
                            "        labels app=web\n    }\n}\n")
        canary = json.loads(explain("-conf", str(corefile), "canary.app.svc.cluster.local", "--json").stdout)
        web = explain("-conf", str(corefile), "web-1.web.app.svc.cluster.local")
        assert [api.lists(kind) != [] for kind in ("Namespace", "Service", "EndpointSlice")] == [True] * 3
        assert all(not api.watches(kind) for kind in ("Namespace", "Service", "EndpointSlice"))
        assert all("labelSelector" not in request.params for request in api.lists("Service"))
    finally:
        api.stop()
    assert canary["reply"]["rcode"] == "NXDOMAIN"
    assert canary["objects"]["left_out"] == [{"object": "Service app/canary",
                                              "reason": "label selector: `labels app=web`"}]
    assert web.returncode == 0, web.stderr
    assert "10.1.0.6 as web-1: ready=false serving=false terminating=true hostname=web-1" in web.stdout
