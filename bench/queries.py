"""The dnsperf query files: the mix of questions pods really send to cluster DNS.

`MIX` (bench/run.py, against NSD):
- 70% A for existing services (ClusterIP and headless, uniformly);
- 10% SRV for a named port, `_<port>._tcp.<svc>.<ns>.svc.cluster.local`;
- 10% AAAA for those IPv4-only services (NODATA);
- 10% search-path misses (NXDOMAIN): with `ndots:5` a pod's resolver tries every search domain
  (`<its ns>.svc.Z`, `svc.Z`, `Z`) before a name with fewer than five dots, so a lookup of
  `svc3.ns1.svc.cluster.local` or `api.github.com` first asks for
  `svc3.ns1.svc.cluster.local.ns1.svc.cluster.local` and the like.

`CHURN_MIX` (bench/churn.py, while headless services' endpoints change): half search-path misses,
as a pod's lookups are (each name it resolves costs one to three misses before the hit, for A and
AAAA alike), and the rest spread so that the answers a change touches are asked often:
- 25% A for ClusterIP services, 15% A for headless services (their endpoints are what changes);
- 10% SRV for a named port (ClusterIP and headless, uniformly);
- 50% search-path misses, A and AAAA.

`with_rewrites` (bench/run.py's `Corefile+rewrite+template` server): the same questions, but one A
for a service in ten asked as its rewritten name, `<svc>.<ns>.svc.example.org` (the rewrite rule's
suffix, `answer auto`), alternating with AAAA for `<svc>.<ns>.example.org` (the AAAA template's zone).

Lines are `name type`, shuffled with a fixed seed, as dnsperf's `-d` reads them.
"""

from __future__ import annotations

import random
from pathlib import Path

from cluster import ZONE, Cluster, Service

MIX = (("A", 0.70), ("SRV", 0.10), ("AAAA", 0.10), ("MISS", 0.10))
CHURN_MIX = (("CLUSTER_IP", 0.25), ("HEADLESS", 0.15), ("SRV", 0.10), ("MISS", 0.50))
EXTERNAL_NAMES = ("api.github.com", "www.googleapis.com", "s3.amazonaws.com", "registry.npmjs.org",
                  "pypi.org", "login.microsoftonline.com", "sqs.eu-west-1.amazonaws.com")
DEFAULT_COUNT = 100_000
REWRITTEN_SUFFIX = ".svc.example.org"  # rewritten to .svc.<ZONE> (bench/run.py's rewrite rule)
TEMPLATE_ZONE = "example.org"  # AAAA answered NOERROR by bench/run.py's template rule
REWRITE_EVERY = 10


def build_queries(cluster: Cluster, count: int = DEFAULT_COUNT, seed: int = 2,
                  mix: tuple[tuple[str, float], ...] = MIX) -> list[tuple[str, str]]:
    """`count` questions (name, type) in `mix`, shuffled.

    Kinds: A and AAAA (any service), CLUSTER_IP and HEADLESS (A for one kind of service), SRV
    (a named port of any service), MISS (a search-path miss).
    """
    rng = random.Random(seed)
    pools: dict[str, tuple[Service, ...]] = {"CLUSTER_IP": cluster.services, "HEADLESS": cluster.headless}
    every = cluster.services + cluster.headless
    questions: list[tuple[str, str]] = []
    for kind, share in mix:
        pool = pools.get(kind, every)
        for _ in range(round(count * share)):
            service = rng.choice(pool)
            if kind == "SRV":
                port = rng.choice(service.ports)[0]
                questions.append((f"_{port}._tcp.{service.fqdn}", "SRV"))
            elif kind == "MISS":
                client_namespace = rng.choice(cluster.namespaces)
                asked = service.fqdn if rng.random() < 0.5 else rng.choice(EXTERNAL_NAMES)
                search = rng.choice((f"{client_namespace}.svc.{ZONE}", f"svc.{ZONE}", ZONE))
                questions.append((f"{asked}.{search}", rng.choice(("A", "AAAA"))))
            else:
                questions.append((service.fqdn, "AAAA" if kind == "AAAA" else "A"))
    rng.shuffle(questions)
    return questions


def write_queries(questions: list[tuple[str, str]], path: Path) -> Path:
    """Write questions as a dnsperf data file; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{name} {qtype}\n" for name, qtype in questions))
    return path


def with_rewrites(questions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The questions, one A for a service in `REWRITE_EVERY` asked under a rewritten name or the template's zone."""
    service_suffix = f".svc.{ZONE}"
    out = []
    for index, (name, qtype) in enumerate(questions):
        if index % REWRITE_EVERY == 0 and qtype == "A" and name.endswith(service_suffix):
            stem = name[:-len(service_suffix)]
            name, qtype = (stem + REWRITTEN_SUFFIX, "A") if index // REWRITE_EVERY % 2 == 0 else \
                (f"{stem}.{TEMPLATE_ZONE}", "AAAA")
        out.append((name, qtype))
    return out
