"""`dns-server explain`: every reason it gives, named in its text and its JSON, over tests/data/explain/.

Each test builds the server block from Corefile text, reads the fixture cluster as the command
does (`tools.reading.cluster_data`: the label selectors, the registry and its namespace filter)
and explains one question through the block's real chain.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dns.message
import dns.rdatatype
import pytest

from dns_server.cluster.registry import Registry
from dns_server.cluster.sources.fixtures import parse_manifest
from dns_server.cluster.updates import Replace
from dns_server.config.corefile import parse_text
from dns_server.plugins import build_config, chain_for, kubernetes
from dns_server.tools.explain import Served, explanation, render
from dns_server.tools.reading import cluster_data
from tests.doubles import ask, pipeline_for

OBJECTS = parse_manifest(Path(__file__).resolve().parents[2] / "data" / "explain" / "cluster.yaml")
Z = "cluster.local"


def corefile(options: str = "", extra: str = "") -> str:
    return (f". {{\n    kubernetes {Z} in-addr.arpa {{\n        kubeconfig /dev/null\n        {options}\n    }}\n"
            f"    {extra}\n    forward . 192.0.2.53 192.0.2.54 {{\n        policy sequential\n    }}\n}}\n")


def explain(name: str, qtype: str = "A", *, options: str = "", extra: str = "",
            client: str | None = None) -> tuple[dict[str, Any], str]:
    """The JSON object (through a JSON round trip) and the text of one explanation."""
    block = build_config(parse_text(corefile(options, extra))).blocks[0]
    settings = kubernetes.settings_of(block)
    assert settings is not None
    cluster = cluster_data(settings.source, OBJECTS, now=1_700_000_000)
    result = explanation([Served(block, chain_for(block), cluster)], name, dns.rdatatype.from_text(qtype), client)
    return json.loads(json.dumps(result)), render(result)


def reasons(result: dict[str, Any]) -> list[str]:
    return [left["reason"] for left in result["objects"]["left_out"]]


def test_a_service_answer_names_the_block_the_plugins_the_objects_and_the_reply() -> None:
    result, text = explain(f"web.app.svc.{Z}")
    assert result["block"]["location"] == "Corefile:1" and result["zone"] == "."
    assert [(step["plugin"], step["did"]) for step in result["chain"]] == [("kubernetes",
                                                                           "answered NOERROR with 1 record")]
    assert result["reading"] == {"kind": "service", "zone": f"{Z}.", "namespace": "app", "service": "web",
                                 "means": "service web in namespace app"}
    service, endpoint_slice = [found for found in result["objects"]["matched"] if found["kind"] != "Namespace"]
    assert service["type"] == "ClusterIP" and service["cluster_ips"] == ["10.96.0.20"]
    web0, web1 = endpoint_slice["endpoints"]
    assert (web0["dns_names"], web0["ready"], web0["serving"], web0["terminating"]) == (["web-0"], True, True, False)
    assert (web1["ready"], web1["serving"], web1["terminating"]) == (False, False, True)
    assert result["reply"]["rcode"] == "NOERROR" and "AA" in result["reply"]["flags"]
    assert result["reply"]["ttls"] == [5]
    assert f"web.app.svc.{Z}. 5 IN A 10.96.0.20" in result["reply"]["dig"]
    assert "10.1.0.6 as web-1: ready=false serving=false terminating=true hostname=web-1" in text
    assert "endpoint 10.1.0.6 (web-1) of EndpointSlice app/web-abcde: not ready" in text


def test_the_reply_is_the_one_the_router_sends() -> None:
    """The explanation's reply against the real router's, for the same block and cluster."""
    block = build_config(parse_text(corefile())).blocks[0]
    settings = kubernetes.settings_of(block)
    assert settings is not None
    cluster = cluster_data(settings.source, OBJECTS, now=1_700_000_000)
    registry = Registry(required_kinds=settings.source.required_kinds)
    registry.apply([Replace(settings.source.required_kinds, cluster.records)], now=1_700_000_000)
    pipeline = pipeline_for(settings=block, registry=registry)
    for name in (f"web.app.svc.{Z}", f"db.app.svc.{Z}", f"_http._tcp.web.app.svc.{Z}"):
        result, _ = explain(name, "SRV")
        routed = ask(pipeline, name, "SRV", use_edns=0, payload=1232)
        routed.id = 0
        assert dns.message.from_text(result["reply"]["dig"]).to_text() == routed.to_text()


def test_an_endpoint_that_is_not_ready_is_left_out_with_its_reason() -> None:
    result, text = explain(f"web-1.web.app.svc.{Z}")
    assert result["reply"]["rcode"] == "NXDOMAIN"
    assert "not ready (conditions.ready is false), terminating" in reasons(result)
    assert "no ready endpoint of the service has this name" in reasons(result)
    assert f"kubernetes: web-1.web.app.svc.{Z}. A: answered NXDOMAIN: no ready endpoint of the service has this name" \
        in text


def test_a_headless_service_without_ready_endpoints_is_nxdomain() -> None:
    result, text = explain(f"db.app.svc.{Z}")
    assert result["reply"]["rcode"] == "NXDOMAIN"
    assert "a headless service with no ready endpoints has no records (as CoreDNS)" in reasons(result)
    assert f"db.app.svc.{Z}.: a headless service with no ready endpoints has no records" in text
    assert f"{Z}. 5 IN SOA ns.dns.{Z}." in result["reply"]["dig"]  # the authority section


def test_ignore_empty_service_is_named() -> None:
    plain, _ = explain(f"empty.app.svc.{Z}")
    assert plain["reply"]["rcode"] == "NOERROR" and not reasons(plain)
    result, text = explain(f"empty.app.svc.{Z}", options="ignore empty_service")
    assert result["reply"]["rcode"] == "NXDOMAIN"
    assert "ignore empty_service: the service has no ready endpoints" in text


def test_a_namespace_the_namespaces_option_filters_out() -> None:
    result, text = explain(f"secret.hidden.svc.{Z}", options="namespaces app")
    assert result["reply"]["rcode"] == "NXDOMAIN"
    assert reasons(result)[0] == "namespace filtered: not in `namespaces app`"
    assert "Namespace hidden: namespace filtered" in text
    served, _ = explain(f"secret.hidden.svc.{Z}")
    assert served["reply"]["rcode"] == "NOERROR"


def test_objects_the_label_selectors_leave_out() -> None:
    result, text = explain(f"canary.app.svc.{Z}", options="labels app=web")
    assert result["reply"]["rcode"] == "NXDOMAIN"
    assert reasons(result) == ["label selector: `labels app=web`"]
    assert "Service app/canary: label selector: `labels app=web`" in text
    by_namespace, _ = explain(f"web.hidden.svc.{Z}", options="namespace_labels team=a")
    assert reasons(by_namespace)[0] == "label selector: `namespace_labels team=a`"


@pytest.mark.parametrize("mode, rcode, reason", [
    ("disabled", "NXDOMAIN", "pods disabled: no pod names (the kubernetes plugin's default)"),
    ("insecure", "NOERROR", "pods insecure: any address answers"),
    ("verified", "NXDOMAIN", "pods verified: no running pod in the namespace has this address"),
])
def test_pod_names_follow_the_pods_mode(mode: str, rcode: str, reason: str) -> None:
    result, text = explain(f"10-1-0-9.app.pod.{Z}", options=f"pods {mode}")  # job-1 has finished
    assert result["reply"]["rcode"] == rcode
    assert reason in text
    assert reason in json.dumps(result["objects"])


def test_a_running_pod_answers_with_pods_verified() -> None:
    result, text = explain(f"10-1-0-5.app.pod.{Z}", options="pods verified")
    assert result["reply"]["rcode"] == "NOERROR"
    assert {"kind": "Pod", "namespace": "app", "name": "web-0", "running": True} in result["objects"]["matched"]


def test_an_srv_name_without_such_a_named_port() -> None:
    result, text = explain(f"_https._tcp.web.app.svc.{Z}", "SRV")
    assert result["reading"]["port"] == "https" and result["reading"]["protocol"] == "tcp"
    assert result["reply"]["rcode"] == "NXDOMAIN"
    assert ("the service has no named port of this name and protocol (an unnamed port has no SRV name)"
            in reasons(result))


def test_a_search_path_miss_is_named() -> None:
    result, text = explain(f"www.example.org.app.svc.{Z}")
    assert result["reading"]["search_path_miss"] == {"name": "www.example.org.", "search_domain": f"app.svc.{Z}."}
    assert result["reply"]["rcode"] == "NXDOMAIN"
    assert f"a search-path miss: www.example.org. with the search domain app.svc.{Z}. appended" in text


def test_an_outside_name_would_be_forwarded_by_policy() -> None:
    result, text = explain("www.example.org")
    assert [step["did"] for step in result["chain"]] == ["passed it on: not in its zones",
                                                         "would forward to 192.0.2.53:53, 192.0.2.54:53"]
    assert result["forward"]["to"] == ["192.0.2.53:53", "192.0.2.54:53"]
    assert result["forward"]["policy"] == "sequential"
    assert result["reply"]["rcode"] is None
    assert "policy sequential: the first healthy upstream in the order listed" in text


def test_an_unknown_reverse_name_falls_through_to_forward() -> None:
    result, text = explain("9.9.9.10.in-addr.arpa", "PTR", options="fallthrough in-addr.arpa")
    assert result["chain"][0]["did"] == "fell through: no answer of its own, passed it on (fallthrough)"
    assert "no service or ready endpoint has this address; fallthrough passes it on" in text


def test_autopath_from_a_pod_walks_its_search_path() -> None:
    options, extra = "pods verified", "autopath @kubernetes"
    result, text = explain(f"web.app.app.svc.{Z}", options=options, extra=extra, client="10.1.0.5")
    assert result["autopath"]["pod_namespace"] == "app"
    assert result["autopath"]["tried"][:2] == [f"web.app.app.svc.{Z}.", f"web.app.svc.{Z}."]
    assert result["reply"]["rcode"] == "NOERROR"
    assert f"web.app.app.svc.{Z}. 5 IN CNAME web.app.svc.{Z}." in result["reply"]["dig"]
    assert "10.1.0.5 is a pod in namespace app: autopath walks that pod's search path" in text
    stranger, _ = explain(f"web.app.app.svc.{Z}", options=options, extra=extra, client="192.0.2.99")
    assert stranger["reply"]["rcode"] == "NXDOMAIN"
    assert stranger["autopath"]["note"] == ("192.0.2.99 is no running pod's address: autopath leaves the question "
                                            "as asked")


def test_a_name_no_block_serves_is_refused() -> None:
    block = build_config(parse_text("example.org {\n    whoami\n}\n")).blocks[0]
    result = explanation([Served(block, chain_for(block), None)], "www.example.com", dns.rdatatype.A)
    assert result["block"] is None and result["reply"]["rcode"] == "REFUSED"
    assert "server block: none serves this name" in render(result)


def test_a_large_answer_is_truncated_for_udp_without_edns() -> None:
    many = [{"addresses": [f"10.2.{i // 250}.{i % 250 + 1}"], "conditions": {"ready": True}} for i in range(60)]
    objects = OBJECTS + [{"kind": "EndpointSlice", "metadata": {"name": "db-big", "namespace": "app", "labels": {
        "kubernetes.io/service-name": "db"}}, "addressType": "IPv4", "endpoints": many}]
    block = build_config(parse_text(corefile())).blocks[0]
    settings = kubernetes.settings_of(block)
    assert settings is not None
    result = explanation([Served(block, chain_for(block), cluster_data(settings.source, objects))],
                         f"db.app.svc.{Z}", dns.rdatatype.A)
    assert result["reply"]["truncated"] is False
    assert result["reply"]["udp_without_edns"]["truncated"] is True
    assert "UDP without EDNS: " in render(result) and "truncated (TC set)" in render(result)


def test_a_rewritten_question_is_read_as_rewritten() -> None:
    result, text = explain("db.example.com", extra=f"rewrite name exact db.example.com web.app.svc.{Z}\n"
                                                   "    hosts {\n        fallthrough\n    }")
    assert [step["did"] for step in result["chain"]] == [
        f"rewrote the question to web.app.svc.{Z}. A",
        "fell through: no answer of its own, passed it on (fallthrough)",
        "answered NOERROR with 1 record"]
    assert result["reading"]["service"] == "web"
    assert "db.example.com. 5 IN A 10.96.0.20" in result["reply"]["dig"]


def test_port_picks_among_blocks_on_several_ports() -> None:
    config = build_config(parse_text(".:53 {\n    whoami\n}\n.:5353 {\n    chaos\n}\n"))
    blocks = [Served(block, chain_for(block), None) for block in config.blocks]
    assert explanation(blocks, "example.org", dns.rdatatype.A)["block"]["keys"] == [".:53"]
    assert explanation(blocks, "example.org", dns.rdatatype.A, port=5353)["block"]["keys"] == [".:5353"]
    assert explanation(blocks, "example.org", dns.rdatatype.A, port=99)["reply"]["rcode"] == "REFUSED"
