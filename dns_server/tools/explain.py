"""`dns-server explain NAME [TYPE] [--from ADDRESS] [--json]`: why a name gets the answer it gets.

With the server's configuration (`-conf Corefile`, or the same flags) and one read of its data
(`tools/reading.py`), `explain` runs the question through the owning block's real chain, traced
(`Chain.trace`), and says:
- the server block and zone that own the name, and each plugin's step (answered, passed on,
  rewrote the question, fell through, would forward);
- how the kubernetes plugin reads the name (`plugins/kubernetes/qname.py`), a search-path miss;
- the objects behind the answer and those left out, each with its reason (`objects`): what the
  registry and the selectors left out, and why the plugin itself says a name is missing
  (`Answer.reason`, set beside each decision in plugins/kubernetes/zone.py);
- the reply as dig prints it, made by the server's own encoder, and what a UDP client without EDNS
  gets; for a forwarded name the upstreams and their policy; with `--from`, the client's pod and
  the search path autopath walked.
`explanation(...)` makes the JSON object (keys documented in the README); `render` the text.
A running server answers the same at `/explain` when started with `--explain-http PORT`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, NamedTuple, Sequence
from urllib.parse import parse_qs

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from dns_server.chain.chain import Chain, Step, admission
from dns_server.chain.plugin import Reads, Request
from dns_server.cluster.records import NAMESPACE, SERVICE, EndpointSlice, Pod, Record, Service
from dns_server.cluster.registry import endpoint_name
from dns_server.cluster.snapshot import Snapshot
from dns_server.config.model import Config, ServerBlock
from dns_server.errors import DnsServerError
from dns_server.plugins import chain_for, forward, kubernetes
from dns_server.plugins.autopath import AutopathSettings
from dns_server.plugins.bufsize import bufsize_of
from dns_server.plugins.forward.setup import Policy
from dns_server.plugins.kubernetes.qname import Kind, Name, parse_qname
from dns_server.plugins.kubernetes.zone import Zone
from dns_server.plugins.kubernetes.setup import KubernetesSettings, PodMode
from dns_server.protocol.answer import Answer, Outcome
from dns_server.protocol.codes import NO_EDNS_PAYLOAD
from dns_server.protocol.encode import encode, error_reply, fit
from dns_server.protocol.names import canonical_address, longest_zone, zone_text
from dns_server.protocol.wire import decode_query
from dns_server.tools.reading import ClusterData

if TYPE_CHECKING:
    from dns_server.cluster.sources.settings import SourceSettings
    from dns_server.serving.runtime import Cluster, Runtime

TEXT = "text/plain; charset=utf-8"
DIG_PAYLOAD = 1232  # the EDNS buffer size dig (9.18) offers
EMPTY = Snapshot.empty(synced=True)
POLICIES = {
    Policy.RANDOM: "one upstream at random, then the others in random order on failure",
    Policy.ROUND_ROBIN: "the upstreams in turn, one query each",
    Policy.SEQUENTIAL: "the first healthy upstream in the order listed",
}


class Served(NamedTuple):
    """One server block as explain reads it: its settings, its chain, its cluster data (None: no kubernetes)."""

    block: ServerBlock
    chain: Chain
    cluster: ClusterData | None


def explanation(blocks: Sequence[Served], name: str, qtype: int, client: str | None = None,
                port: int | None = None) -> dict[str, Any]:
    """Why `name` gets its answer, asked on `port` (None: any): one JSON-ready object (see the README)."""
    name = name.lower().rstrip(".")
    result: dict[str, Any] = {"question": {"name": name + ".", "type": _type(qtype)},
                              "client": client, "block": None, "zone": None, "chain": [], "reading": None,
                              "objects": {"matched": [], "left_out": []}, "forward": None, "autopath": None,
                              "reply": None}
    owner = _owner(blocks, name, port)
    if owner is None:
        result["reply"] = _reply(name, qtype, None, NO_EDNS_PAYLOAD,
                                 "no server block serves this name: the server answers REFUSED")
        return result
    served, zone = owner
    block = served.block
    result["block"] = {"keys": [str(key) for key in block.keys], "location": block.location}
    result["zone"] = zone_text(zone)
    snapshot = served.cluster.snapshot if served.cluster is not None else EMPTY
    answer, steps = served.chain.trace(name, qtype, snapshot, (client, 0) if client else None)
    result["chain"] = [_step(step, block) for step in steps]
    settings = kubernetes.settings_of(block)
    if settings is not None and served.cluster is not None:
        asked = next((step.name for step in steps if step.plugin == "kubernetes"), name)  # after a rewrite
        cluster_zone = longest_zone(asked, settings.zones)
        if cluster_zone is not None:
            parsed = parse_qname(asked, cluster_zone)
            result["reading"] = _reading(asked, parsed, settings, snapshot)
            result["objects"] = _objects(parsed, settings, served.cluster)
            reason = _cluster_answer(asked, parsed, qtype, settings, block, snapshot).reason
            if reason:
                result["objects"]["left_out"].append({"object": asked + ".", "reason": reason})
    if answer.outcome in (Outcome.FORWARD, Outcome.CHASE):
        result["forward"] = _forward(block, answer)
    if client is not None:
        result["autopath"] = _autopath(block, client, snapshot, steps)
    result["reply"] = _reply(name, qtype, answer, bufsize_of(block))
    return result


def _type(qtype: int) -> str:
    return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(qtype))


def _owner(blocks: Sequence[Served], name: str, port: int | None) -> tuple[Served, str] | None:
    """The block with the longest zone the name lies in, among those on `port` (the first such, as the router)."""
    best: tuple[Served, str] | None = None
    for served in blocks:
        zone = longest_zone(name, served.block.zones if port is None else served.block.zones_on(port))
        if zone is not None and (best is None or len(zone) > len(best[1])):
            best = (served, zone)
    return best


# -- the chain ----------------------------------------------------------------------------------------
def _step(step: Step, block: ServerBlock) -> dict[str, Any]:
    return {"plugin": step.plugin, "name": step.name + ".", "type": _type(step.qtype),
            "depth": step.depth, "did": _did(step, block)}


def _did(step: Step, block: ServerBlock) -> str:
    answer = step.answer
    assert answer is not None  # the trace is complete
    if not step.passed:
        return _outcome_text(answer, block)
    others = [f"{name}. {_type(qtype)}" for name, qtype, _ in step.passed if (name, qtype) != (step.name, step.qtype)]
    if step.plugin == "autopath" and others:
        return f"walked the search path: tried {', '.join(others)}; {_outcome_text(answer, block)}"
    if others:
        return f"rewrote the question to {', '.join(others)}"
    if answer is step.passed[-1][2]:
        settings = block.setting(step.plugin)
        if not hasattr(settings, "fallthrough"):
            return "passed it on"
        if longest_zone(step.name, settings.zones or block.zones) is None:
            return "passed it on: not in its zones"
        return "fell through: no answer of its own, passed it on (fallthrough)"
    if answer.rotations:
        return "passed it on, then offered the records in turned orders (one order per reply)"
    return f"passed it on, then changed the answer: {_outcome_text(answer, block)}"


def _outcome_text(answer: Answer, block: ServerBlock) -> str:
    if answer.outcome in (Outcome.FORWARD, Outcome.CHASE):
        directive = _directive(block, answer)
        target = f"{answer.chase}. " if answer.outcome is Outcome.CHASE else ""
        to = ", ".join(str(upstream) for upstream in directive.to) if directive is not None else "?"
        return f"would forward {target}to {to}" + (" (after the CNAME it answered)" if target else "")
    records = len(answer.answer)
    text = f"answered {dns.rcode.to_text(dns.rcode.Rcode.make(answer.rcode))}"
    text += f" with {records} record{'s' if records > 1 else ''}" if records else ""
    text += " (NODATA)" if answer.outcome is Outcome.NODATA else ""
    return text + (f": {answer.reason}" if answer.reason else "")


def _directive(block: ServerBlock, answer: Answer) -> Any:
    forwards = forward.settings_of(block) or ()
    return forwards[answer.forward] if 0 <= answer.forward < len(forwards) else None


def _forward(block: ServerBlock, answer: Answer) -> dict[str, Any] | None:
    directive = _directive(block, answer)
    if directive is None:
        return None
    return {"location": directive.location, "from": zone_text(directive.from_zone),
            "except": [zone_text(zone) for zone in directive.except_zones],
            "to": [str(upstream) for upstream in directive.to], "policy": directive.policy.value,
            "policy_means": POLICIES[directive.policy], "max_fails": directive.max_fails,
            "health_check_seconds": directive.health_check, "force_tcp": directive.force_tcp,
            "prefer_udp": directive.prefer_udp, "cache": block.setting("cache") is not None,
            "why": f"the block's first forward whose FROM ({zone_text(directive.from_zone)}) covers the name"
                   + (" and none of whose except zones does" if directive.except_zones else "")}


def _autopath(block: ServerBlock, client: str, snapshot: Snapshot, steps: Sequence[Step]) -> dict[str, Any]:
    settings: AutopathSettings | None = block.setting("autopath")
    namespace = snapshot.client_namespace(client)
    tried = [name + "." for step in steps if step.plugin == "autopath" for name, _, _ in step.passed]
    if settings is None:
        note = "the block has no autopath: every client gets the same answer"
    elif not settings.kubernetes:
        note = f"autopath walks the search path of its resolv.conf for every client: {', '.join(settings.search)}"
    elif namespace is None:
        note = f"{client} is no running pod's address: autopath leaves the question as asked"
    else:
        note = f"{client} is a pod in namespace {namespace}: autopath walks that pod's search path"
    return {"pod_namespace": namespace, "tried": tried, "note": note}


def _cluster_answer(name: str, parsed: Name, qtype: int, settings: KubernetesSettings, block: ServerBlock,
                    snapshot: Snapshot) -> Answer:
    """The kubernetes plugin's own answer, before any `fallthrough`: its `reason` says why a name is missing."""
    def rest(request: Request) -> Answer:
        return Answer(Outcome.NXDOMAIN)  # an ExternalName's outside target: not asked here

    return Zone(name, parsed, Request(name, qtype, Reads(snapshot)), rest, settings, block.bind).answer(qtype)


# -- how the kubernetes plugin reads the name ---------------------------------------------------------
def _reading(name: str, parsed: Name, settings: KubernetesSettings, snapshot: Snapshot) -> dict[str, Any]:
    reading: dict[str, Any] = {"kind": parsed.kind.value, "zone": zone_text(parsed.zone)}
    for part in ("namespace", "service", "endpoint", "port", "protocol", "address"):
        if getattr(parsed, part):
            reading[part] = getattr(parsed, part)
    reading["means"] = _means(parsed, settings)
    miss = search_miss(name, parsed, snapshot)
    if miss is not None:
        reading["search_path_miss"] = {"name": miss[0] + ".", "search_domain": miss[1] + "."}
    return reading


def _means(parsed: Name, settings: KubernetesSettings) -> str:
    kind, ns, svc = parsed.kind, parsed.namespace, parsed.service
    return {
        Kind.APEX: "the apex of the zone (SOA, NS)",
        Kind.DNS_VERSION: "the schema version of the Kubernetes DNS specification (TXT)",
        Kind.NS_DNS: f"the cluster DNS service's own address ({'/'.join(settings.dns_service)})",
        Kind.EMPTY: "an empty non-terminal (svc, pod or dns): it exists, with no records",
        Kind.NAMESPACE: f"namespace {ns}: it exists, with no records",
        Kind.SERVICE: f"service {svc} in namespace {ns}",
        Kind.ENDPOINT: f"endpoint {parsed.endpoint} of service {svc} in namespace {ns}",
        Kind.PORT: f"the SRV records of port {parsed.port}, protocol {parsed.protocol}, of service {svc} "
                   f"in namespace {ns}",
        Kind.POD_NAMESPACE: f"the pods of namespace {ns}: it exists, with no records",
        Kind.POD: (f"the pod address {parsed.address} in namespace {ns}" if parsed.address
                   else "a pod name whose label spells no address"),
        Kind.REVERSE: (f"the reverse name of {parsed.address}" if parsed.address
                       else "a reverse name that is not one whole address"),
        Kind.INVALID: "no name the Kubernetes DNS specification defines",
    }[kind]


def search_miss(name: str, parsed: Name, snapshot: Snapshot) -> tuple[str, str] | None:
    """(the name meant, the search domain a resolver appended), when the name looks like one.

    A pod's resolver (ndots:5) tries `NAME.<ns>.svc.Z`, `NAME.svc.Z` and `NAME.Z` before NAME
    itself: an outside name such as www.example.org arrives as `www.example.org.default.svc.Z`,
    whose NXDOMAIN sends the resolver on to its next search domain.
    """
    zone = parsed.zone
    relative = name[: -len(zone) - 1].split(".") if zone else name.split(".")
    if parsed.kind is Kind.INVALID and len(relative) >= 5 and relative[-1] == "svc":
        return ".".join(relative[:-2]), ".".join(relative[-2:] + [zone])
    if parsed.kind in (Kind.SERVICE, Kind.ENDPOINT) and parsed.namespace not in snapshot.namespaces:
        return ".".join(relative[:-1]), f"svc.{zone}"
    if parsed.kind is Kind.INVALID and len(relative) >= 2 and relative[-1] not in ("svc", "pod", "dns"):
        return ".".join(relative), zone
    return None


# -- the objects behind the answer ---------------------------------------------------------------------
def _objects(parsed: Name, settings: KubernetesSettings, cluster: ClusterData) -> dict[str, list[dict[str, Any]]]:
    matched: list[dict[str, Any]] = []
    left_out: list[dict[str, Any]] = []
    kind = parsed.kind
    if kind in (Kind.NAMESPACE, Kind.SERVICE, Kind.ENDPOINT, Kind.PORT, Kind.POD, Kind.POD_NAMESPACE):
        _namespace(parsed.namespace, settings, cluster, matched, left_out)
    if kind in (Kind.POD, Kind.POD_NAMESPACE):
        _pods(parsed, settings, cluster, matched)
    if kind in (Kind.SERVICE, Kind.ENDPOINT, Kind.PORT):
        _service(parsed, settings, cluster, matched, left_out)
    if kind is Kind.REVERSE and parsed.address:
        names = cluster.snapshot.reverse.get(parsed.address, ())
        matched += [{"kind": "PTR", "name": f"{owner}.svc.{settings.primary_zone}."} for owner in names]
        if not names:
            left_out.append({"object": f"address {parsed.address}",
                             "reason": "no service or ready endpoint has this address"
                                       + ("; fallthrough passes it on" if settings.fallthrough.covers(parsed.zone)
                                          else "")})
    return {"matched": matched, "left_out": left_out}


def _namespace(namespace: str, settings: KubernetesSettings, cluster: ClusterData, matched: list[dict[str, Any]],
               left_out: list[dict[str, Any]]) -> None:
    unselected = [option for record, option in cluster.unselected
                  if record.key == (NAMESPACE, "", namespace)]
    if settings.namespaces and namespace not in settings.namespaces:
        left_out.append({"object": f"Namespace {namespace}",
                         "reason": f"namespace filtered: not in `namespaces {' '.join(settings.namespaces)}`"})
    elif unselected:
        left_out.append({"object": f"Namespace {namespace}", "reason": f"label selector: `{unselected[0]}`"})
    elif namespace in cluster.snapshot.namespaces:
        matched.append({"kind": "Namespace", "name": namespace})
    else:
        left_out.append({"object": f"Namespace {namespace}", "reason": "not found: no such namespace"})


def _service(parsed: Name, settings: KubernetesSettings, cluster: ClusterData, matched: list[dict[str, Any]],
             left_out: list[dict[str, Any]]) -> None:
    namespace, name = parsed.namespace, parsed.service
    key = (SERVICE, namespace, name)
    entry = cluster.snapshot.services.get((namespace, name))
    service = next((r for r in cluster.records if r.key == key), None)
    label = f"Service {namespace}/{name}"
    for record, option in cluster.unselected:
        if record.key == key or (isinstance(record, EndpointSlice) and (record.namespace, record.service)
                                 == (namespace, name)):
            left_out.append({"object": _label(record), "reason": f"label selector: `{option}`"})
    if not isinstance(service, Service):
        if not any(record.key == key for record, _ in cluster.unselected):
            left_out.append({"object": label, "reason": "not found: no such service"})
        return
    if entry is None:
        return  # its namespace is filtered: said above
    matched.append(_service_object(service))
    if service.external_name:
        return
    if settings.noendpoints:
        left_out.append({"object": f"EndpointSlices of {label}", "reason": "noendpoints: EndpointSlices are not read"})
    for record in cluster.records:
        if isinstance(record, EndpointSlice) and (record.namespace, record.service) == (namespace, name):
            matched.append(_slice_object(record, cluster, settings.endpoint_pod_names, left_out))


def _service_object(service: Service) -> dict[str, Any]:
    kind = "ExternalName" if service.external_name else "Headless" if service.headless else "ClusterIP"
    found: dict[str, Any] = {"kind": "Service", "namespace": service.namespace, "name": service.name, "type": kind,
                             "cluster_ips": list(service.cluster_ips),
                             "ports": [f"{p.name or '(unnamed)'} {p.port}/{p.protocol}" for p in service.ports]}
    if service.external_name:
        found["external_name"] = service.external_name
    return found


def _slice_object(record: EndpointSlice, cluster: ClusterData, use_pod_names: bool,
                  left_out: list[dict[str, Any]]) -> dict[str, Any]:
    conditions = cluster.conditions.get(record.key, ())
    endpoints = []
    for index, endpoint in enumerate(record.endpoints):
        listed = conditions[index] if index < len(conditions) else {}
        names = [endpoint_name(endpoint.hostname, endpoint.pod_name, address, use_pod_names)
                 for address in endpoint.addresses]
        endpoints.append({"addresses": list(endpoint.addresses), "hostname": endpoint.hostname,
                          "pod": endpoint.pod_name, "dns_names": names, "ready": endpoint.ready,
                          "serving": listed.get("serving"), "terminating": listed.get("terminating")})
        if not endpoint.ready:
            left_out.append({"object": f"endpoint {', '.join(endpoint.addresses)} ({names[0] if names else '-'}) "
                                       f"of EndpointSlice {record.namespace}/{record.name}",
                             "reason": "not ready (conditions.ready is false)"
                                       + (", terminating" if listed.get("terminating") else "")})
    return {"kind": "EndpointSlice", "namespace": record.namespace, "name": record.name,
            "ports": [f"{p.name or '(unnamed)'} {p.port}/{p.protocol}" for p in record.ports], "endpoints": endpoints}


def _pods(parsed: Name, settings: KubernetesSettings, cluster: ClusterData, matched: list[dict[str, Any]]) -> None:
    if parsed.kind is not Kind.POD or not parsed.address or settings.pods is PodMode.DISABLED:
        return
    if settings.pods is PodMode.INSECURE:
        matched.append({"kind": "pod address", "address": parsed.address,
                        "note": "pods insecure: any address answers in a namespace that exists, whether a pod "
                                "has it or not"})
        return
    matched += [{"kind": "Pod", "namespace": pod.namespace, "name": pod.name, "running": pod.running}
                for pod in cluster.records if isinstance(pod, Pod) and pod.namespace == parsed.namespace
                and parsed.address in pod.ips and pod.running]


def _label(record: Record) -> str:
    kind, namespace, name = record.key
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


# -- the reply -------------------------------------------------------------------------------------------
def _reply(name: str, qtype: int, answer: Answer | None, bufsize: int, note: str = "") -> dict[str, Any]:
    if answer is not None and answer.outcome in (Outcome.FORWARD, Outcome.CHASE):
        return {"rcode": None, "note": "the reply comes from upstream: explain asks no upstream", "dig": None,
                "udp_without_edns": None}
    reply: dict[str, Any] = {}
    for edns, key in ((True, "dig"), (False, "udp_without_edns")):
        message = dns.message.make_query(name + ".", dns.rdatatype.RdataType.make(qtype), use_edns=0 if edns else None,
                                         payload=DIG_PAYLOAD)
        message.id = 0  # the same text every time
        query = decode_query(message.to_wire())
        if answer is None:
            wire = error_reply(query, admission(query, None), bufsize)
        else:
            wire = encode(query, answer, bufsize).wire
        limit = max(min(DIG_PAYLOAD, bufsize), NO_EDNS_PAYLOAD) if edns else NO_EDNS_PAYLOAD
        sent = fit(wire, limit)
        parsed = dns.message.from_wire(sent)
        if edns:
            reply.update({"rcode": dns.rcode.to_text(parsed.rcode()),
                          "flags": dns.flags.to_text(parsed.flags).split(),
                          "ttls": sorted({rrset.ttl for section in (parsed.answer, parsed.authority)
                                          for rrset in section}),
                          "size": len(sent), "truncated": bool(parsed.flags & dns.flags.TC),
                          "dig": parsed.to_text()})
        else:
            reply[key] = {"size": len(sent), "full_size": len(wire), "truncated": bool(parsed.flags & dns.flags.TC)}
    if note:
        reply["note"] = note
    return reply


# -- the text -------------------------------------------------------------------------------------------------
def render(result: dict[str, Any]) -> str:
    """The explanation for people."""
    question = result["question"]
    lines = [f"question: {question['name']} {question['type']}"
             + (f" from {result['client']}" if result["client"] else "")]
    if result["block"] is None:
        lines.append("server block: none serves this name")
    else:
        block = result["block"]
        lines.append(f"server block: {' '.join(block['keys'])} ({block['location']}), zone {result['zone']}")
        lines.append("plugins, in the order they ran:")
        lines += [f"  {'  ' * step['depth']}{step['plugin']}: {step['name']} {step['type']}: {step['did']}"
                  for step in result["chain"]]
    reading = result["reading"]
    if reading is not None:
        lines.append(f"read as: {reading['kind']} in {reading['zone']}: {reading['means']}")
        miss = reading.get("search_path_miss")
        if miss:
            lines.append(f"  a search-path miss: {miss['name']} with the search domain {miss['search_domain']} "
                         "appended; its NXDOMAIN sends a pod's resolver on to its next search domain")
    objects = result["objects"]
    if objects["matched"]:
        lines.append("objects matched:")
        lines += [f"  {line}" for found in objects["matched"] for line in _object_lines(found)]
    if objects["left_out"]:
        lines.append("left out:")
        lines += [f"  {left['object']}: {left['reason']}" for left in objects["left_out"]]
    upstream = result["forward"]
    if upstream is not None:
        lines.append(f"forwarded by `forward {upstream['from']} ...` ({upstream['location']}): {upstream['why']}")
        lines.append(f"  upstreams: {', '.join(upstream['to'])}; policy {upstream['policy']}: "
                     f"{upstream['policy_means']}; max_fails {upstream['max_fails']}, health check every "
                     f"{upstream['health_check_seconds']:g} s"
                     + ("; the cache plugin answers from its cache while it holds the reply" if upstream["cache"]
                        else ""))
    autopath = result["autopath"]
    if autopath is not None:
        lines.append(f"client {result['client']}: {autopath['note']}")
        if autopath["tried"]:
            lines.append(f"  tried: {', '.join(autopath['tried'])}")
    reply = result["reply"]
    if reply.get("note"):
        lines.append(f"reply: {reply['note']}")
    if reply.get("dig"):
        lines.append(f"reply ({reply['size']} bytes over UDP with EDNS, as dig shows it):")
        lines += [f"  {line}" for line in reply["dig"].splitlines()]
        plain = reply["udp_without_edns"]
        lines.append(f"UDP without EDNS: {plain['size']} of {plain['full_size']} bytes, "
                     + ("truncated (TC set): the client retries over TCP" if plain["truncated"] else "not truncated"))
    return "\n".join(lines) + "\n"


def _object_lines(found: dict[str, Any]) -> Iterable[str]:
    kind = found["kind"]
    if kind == "Service":
        target = f" -> {found['external_name']}" if "external_name" in found else ""
        yield (f"Service {found['namespace']}/{found['name']}: {found['type']}{target}, "
               f"IPs {', '.join(found['cluster_ips']) or 'none'}, ports {', '.join(found['ports']) or 'none'}")
    elif kind == "EndpointSlice":
        yield f"EndpointSlice {found['namespace']}/{found['name']}: ports {', '.join(found['ports']) or 'none'}"
        for endpoint in found["endpoints"]:
            yield (f"  {', '.join(endpoint['addresses'])} as {', '.join(endpoint['dns_names'])}: "
                   f"ready={_flag(endpoint['ready'])} serving={_flag(endpoint['serving'])} "
                   f"terminating={_flag(endpoint['terminating'])}"
                   + (f" hostname={endpoint['hostname']}" if endpoint["hostname"] else "")
                   + (f" pod={endpoint['pod']}" if endpoint["pod"] else ""))
    elif kind == "Namespace":
        yield f"Namespace {found['name']}"
    elif kind == "Pod":
        yield f"Pod {found['namespace']}/{found['name']} (running)"
    elif kind == "PTR":
        yield f"PTR {found['name']}"
    else:
        yield f"{kind} {found['address']}: {found['note']}"


def _flag(value: Any) -> str:
    return "-" if value is None else str(value).lower()


# -- on a running server (--explain-http) ------------------------------------------------------------------
def served_by(runtime: Runtime) -> list[Served]:
    """What a running server serves now: its blocks' chains and snapshots, and the objects its registries
    hold (already filtered: what a filter left out is not there; of an endpoint's conditions, only `ready`)."""
    served = []
    for block in runtime.blocks:
        settings = kubernetes.settings_of(block.settings)
        cluster = None
        if settings is not None:
            cluster = ClusterData(block.view.snapshot, runtime.clusters[settings.source].registry.records())
        served.append(Served(block.settings, block.chain, cluster))
    return served


def served_from(config: Config, clusters: Mapping[SourceSettings, Cluster]) -> list[Served]:
    """What a supervisor of worker processes serves: its configuration's chains over the clusters it
    feeds the workers (the same filtered records as `served_by`)."""
    from dns_server.serving.runtime import read_hosts

    def read_cluster(settings: SourceSettings, now: float) -> ClusterData:
        cluster = clusters[settings]
        return ClusterData(cluster.view.snapshot, cluster.registry.records())

    return _served(config, read_cluster, read_hosts)


def page(blocks: Sequence[Served], query: str) -> tuple[int, str, bytes]:
    """/explain?name=NAME[&type=TYPE][&from=ADDRESS][&format=text]: the explanation, as JSON by default."""
    params = {key: values[-1] for key, values in parse_qs(query).items()}
    usage = "give ?name=NAME[&type=TYPE][&from=ADDRESS][&format=text]"
    if not params.get("name"):
        return 400, TEXT, f"explain: no name: {usage}\n".encode()
    name = params["name"]
    try:
        qtype = dns.rdatatype.from_text(params.get("type", "A").upper())
    except dns.rdatatype.UnknownRdatatype:
        return 400, TEXT, f"explain: type {params['type']!r} is not a record type: {usage}\n".encode()
    try:
        client = canonical_address(params["from"]) if "from" in params else None
    except ValueError:
        return 400, TEXT, f"explain: from {params['from']!r} is not an IP address: {usage}\n".encode()
    result = explanation(blocks, name, qtype, client)
    if params.get("format") == "text":
        return 200, TEXT, render(result).encode()
    return 200, "application/json", json.dumps(result, indent=2).encode() + b"\n"


# -- the command ---------------------------------------------------------------------------------------------
def main(parser: argparse.ArgumentParser, argv: Sequence[str],
         configure: Callable[[argparse.Namespace], Config]) -> int:
    """`dns-server explain ...`, with the server's parser and its way from flags to a Config (cli.py):
    0 when explained, 1 for a configuration or data that cannot be read."""
    from dns_server.serving.runtime import read_hosts
    from dns_server.tools.reading import read_cluster

    parser.prog = "dns-server explain"
    parser.description = "Explain why a name gets the answer it gets, with the server's configuration and data."
    parser.add_argument("name", help="the name asked")
    parser.add_argument("type", nargs="?", default="A", help="the record type (default A)")
    parser.add_argument("--from", dest="client", metavar="ADDRESS", help="the address the question comes from")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of text")
    parser.add_argument("--port", type=int, metavar="N",
                        help="the port the question is asked on, when server blocks listen on several (default: any)")
    args = parser.parse_args(argv)
    unused = [flag for flag, given in (("-version", args.version), ("-plugins", args.plugins),
                                       ("--explain-http", args.explain_http)) if given]
    if unused:
        parser.error(f"{', '.join(unused)}: the server's, not explain's")
    try:
        qtype = dns.rdatatype.from_text(args.type.upper())
    except dns.rdatatype.UnknownRdatatype:
        parser.error(f"{args.type}: not a record type")
    try:
        client = canonical_address(args.client) if args.client else None
    except ValueError:
        parser.error(f"--from {args.client}: not an IP address")
    try:
        config = configure(args)
        blocks = _served(config, read_cluster, read_hosts)
    except (DnsServerError, OSError) as error:
        print(f"dns-server explain: error: {error}", file=sys.stderr)
        return 1
    result = explanation(blocks, args.name, qtype, client, args.port)
    sys.stdout.write(json.dumps(result, indent=2) + "\n" if args.json else render(result))
    return 0


def _served(config: Config, read_cluster: Any, read_hosts: Any) -> list[Served]:
    """Every block with its chain (hosts tables read) and its cluster data, each source read once."""
    clusters: dict[Any, ClusterData] = {}
    blocks = []
    now = time.time()
    for block in config.blocks:
        settings = kubernetes.settings_of(block)
        cluster = None
        if settings is not None:
            if settings.source not in clusters:
                clusters[settings.source] = read_cluster(settings.source, now)
            cluster = clusters[settings.source]
        chain = chain_for(block)
        hosts = block.setting("hosts")
        if hosts is not None:
            chain.handler("hosts").table = read_hosts(hosts, hosts.zones or block.zones, None)[0]  # type: ignore
        blocks.append(Served(block, chain, cluster))
    return blocks
