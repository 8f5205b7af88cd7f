"""The dnsperf query file: the mix of questions pods really send to cluster DNS.

- 70% A for existing services (ClusterIP and headless, uniformly);
- 10% SRV for a named port, `_<port>._tcp.<svc>.<ns>.svc.cluster.local`;
- 10% AAAA for those IPv4-only services (NODATA);
- 10% search-path misses (NXDOMAIN): with `ndots:5` a pod's resolver tries every search domain
  (`<its ns>.svc.Z`, `svc.Z`, `Z`) before a name with fewer than five dots, so a lookup of
  `svc3.ns1.svc.cluster.local` or `api.github.com` first asks for
  `svc3.ns1.svc.cluster.local.ns1.svc.cluster.local` and the like.

Lines are `name type`, shuffled with a fixed seed, as dnsperf's `-d` reads them.
"""

from __future__ import annotations

import random
from pathlib import Path

from cluster import CLUSTER_IP_PORTS, HEADLESS_PORT, ZONE, Cluster

MIX = (("A", 0.70), ("SRV", 0.10), ("AAAA", 0.10), ("MISS", 0.10))
EXTERNAL_NAMES = ("api.github.com", "www.googleapis.com", "s3.amazonaws.com", "registry.npmjs.org",
                  "pypi.org", "login.microsoftonline.com", "sqs.eu-west-1.amazonaws.com")
DEFAULT_COUNT = 100_000


def build_queries(cluster: Cluster, count: int = DEFAULT_COUNT, seed: int = 2) -> list[tuple[str, str]]:
    """`count` questions (name, type) in the mix above, shuffled."""
    rng = random.Random(seed)
    services = [(s.fqdn, s.name, s.namespace, [p[0] for p in CLUSTER_IP_PORTS]) for s in cluster.services]
    services += [(h.fqdn, h.name, h.namespace, [HEADLESS_PORT[0]]) for h in cluster.headless]
    questions: list[tuple[str, str]] = []
    for kind, share in MIX:
        for _ in range(round(count * share)):
            fqdn, name, namespace, ports = rng.choice(services)
            if kind == "SRV":
                questions.append((f"_{rng.choice(ports)}._tcp.{fqdn}", "SRV"))
            elif kind == "MISS":
                client_namespace = rng.choice(cluster.namespaces)
                asked = fqdn if rng.random() < 0.5 else rng.choice(EXTERNAL_NAMES)
                search = rng.choice((f"{client_namespace}.svc.{ZONE}", f"svc.{ZONE}", ZONE))
                questions.append((f"{asked}.{search}", rng.choice(("A", "AAAA"))))
            else:
                questions.append((fqdn, kind))
    rng.shuffle(questions)
    return questions


def write_queries(questions: list[tuple[str, str]], path: Path) -> Path:
    """Write questions as a dnsperf data file; returns the path."""
    path.write_text("".join(f"{name} {qtype}\n" for name, qtype in questions))
    return path
