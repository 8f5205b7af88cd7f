"""What a query of the saturated mix costs once the answer table is warm: the Corefile server with and without autopath.

    .venv/bin/python bench/warm.py [--against ../other-checkout] [--repeat 20] [--rounds 3]

The Corefile server of `bench/run.py` (kubeadm's, with `prometheus`, on the benchmark cluster loaded
from its fixture files), started in this process (`runtime.start`), twice: as run.py's plain
Corefile server (`pods insecure`) and as its `--autopath` one (`pods verified`, `autopath
@kubernetes`, the fixtures holding the pod `AUTOPATH_CLIENT` at 127.0.0.1).  The query file's
questions are asked as dnsperf asks them (RD, no EDNS, each with an ID of its own) from
127.0.0.1, dnsperf's address, straight through the listener's `Pipeline.handle` (no socket):
once to warm the table, then `--repeat` times, timed in CPU time of this thread per kind of
question (bench/queries.py MIX: A, SRV, AAAA, and the search-path misses, split by what autopath
makes of them: see KINDS) and over the whole file in its order.

Figures are microseconds per query: the median over every pass of every process.  With
`--against`, each checkout is measured in processes of its own with that checkout first on
`sys.path`, in turns (`--rounds` per checkout), and the medians are printed side by side.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import checkouts_in_turns, checkouts_parser

CLIENT = ("127.0.0.1", 40000)  # dnsperf's address: AUTOPATH_CLIENT's
# a search-path miss `base.N.svc.Z` under a namespace N of the cluster (autopath keeps its answer per client
# namespace), under an N the cluster lacks (`base.svc.Z`: N is base's last label), and the rest (`base.Z`)
KINDS = ("A", "SRV", "AAAA", "miss under a namespace", "miss under no namespace", "miss, other", "whole mix")
VARIANTS = ("Corefile", "Corefile+autopath")


def wires_by_kind(directory: Path) -> tuple[list[bytes], dict[str, list[bytes]], Path]:
    """The query file as dnsperf sends it, the same split by kind, and the fixtures' directory (written in `directory`)."""
    import dns.message
    from cluster import AUTOPATH_CLIENT, ZONE, build_cluster, pod_object, write_fixtures
    from queries import build_queries

    cluster = build_cluster()
    namespaces = set(cluster.namespaces)
    fixtures = write_fixtures(cluster, directory / "fixtures").parent
    (fixtures / "autopath-client.json").write_text(json.dumps(pod_object(AUTOPATH_CLIENT, managed_fields=False)))
    wires: list[bytes] = []
    kinds: dict[str, list[bytes]] = {kind: [] for kind in KINDS}
    for index, (name, qtype) in enumerate(build_queries(cluster)):
        wire = dns.message.make_query(name, qtype, id=index % 65536).to_wire()
        wires.append(wire)
        labels = name.removesuffix("." + ZONE).split(".")  # what autopath reads below the zone
        if qtype == "SRV" or len(labels) == 3 and labels[-1] == "svc":
            kinds[qtype].append(wire)  # a service's own name
        elif len(labels) < 3 or labels[-1] != "svc":
            kinds["miss, other"].append(wire)
        else:
            kinds["miss under a namespace" if labels[-2] in namespaces else "miss under no namespace"].append(wire)
    kinds["whole mix"] = wires
    return wires, kinds, fixtures


async def pipeline_for(fixtures: Path, autopath: bool) -> tuple[Any, Any]:
    """The Corefile server's listener pipeline (and its runtime), started in this process."""
    from common import free_port
    from run import COREFILE_TEXT

    from dns_server.observability.metrics import Metrics
    from dns_server.plugins import load_config
    from dns_server.serving.runtime import start

    port = free_port()
    corefile = fixtures / f"Corefile-{port}"
    corefile.write_text(COREFILE_TEXT.format(
        port=port, health=free_port(), ready=free_port(), fixtures=fixtures,
        pods="verified" if autopath else "insecure", autopath="    autopath @kubernetes\n" if autopath else "",
        prometheus=f"    prometheus 127.0.0.1:{free_port()}\n", rules=""))
    runtime = await start(load_config(corefile), metrics=Metrics())
    (pipeline,) = runtime.pipelines
    return pipeline, runtime


def timed(pipeline: Any, wires: list[bytes]) -> float:
    """CPU microseconds per query of one pass over `wires`."""
    handle = pipeline.handle
    clock = time.thread_time
    started = clock()
    for wire in wires:
        handle(wire, False, CLIENT)
    return (clock() - started) / len(wires) * 1e6


def measure(repeat: int) -> dict[str, float]:
    """Median microseconds per query of each kind, for each variant, with this process's checkout."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    result: dict[str, float] = {}

    async def run(wires: list[bytes], kinds: dict[str, list[bytes]], fixtures: Path) -> None:
        started = [await pipeline_for(fixtures, variant != VARIANTS[0]) for variant in VARIANTS]
        for pipeline, _ in started:
            timed(pipeline, wires)  # the table warmed
        gc.collect()
        gc.freeze()
        passes: dict[str, list[float]] = {f"{variant}: {kind}": [] for variant in VARIANTS for kind in KINDS}
        for _ in range(repeat):  # the variants in turns, so load from others falls on both alike
            for kind in KINDS:
                for variant, (pipeline, _) in zip(VARIANTS, started):
                    passes[f"{variant}: {kind}"].append(timed(pipeline, kinds[kind]))
        result.update({figure: statistics.median(times) for figure, times in passes.items()})
        for variant, (pipeline, runtime) in zip(VARIANTS, started):
            result[f"{variant}: kept"] = len(pipeline.table)
            await runtime.stop_unused(None)
        result.update({f"share: {kind}": len(kinds[kind]) / len(wires) for kind in KINDS})

    with tempfile.TemporaryDirectory(prefix="bench-warm-") as temp:
        asyncio.run(run(*wires_by_kind(Path(temp))))
    return result


def main() -> None:
    args = checkouts_parser(__doc__.split("\n\n")[0], 20, "timed passes over every question per process").parse_args()
    if args.measure:
        print(json.dumps(measure(args.repeat)))
        return
    names, checkouts, columns = checkouts_in_turns(__file__, args)
    print(f"CPU microseconds per query through Pipeline.handle, warm table (median of {args.rounds} processes x "
          f"{args.repeat} passes)")
    print(f"{'kind':<22}{'share':>7}" + "".join(f"{name + ' ' + variant:>28}" for name in names for variant in VARIANTS)
          + "".join(f"{name + ' autopath cost':>22}" for name in names))
    for kind in KINDS:
        figures = [column[f"{variant}: {kind}"] for column in columns for variant in VARIANTS]
        costs = [column[f"{VARIANTS[1]}: {kind}"] / column[f"{VARIANTS[0]}: {kind}"] - 1 for column in columns]
        print(f"{kind:<22}{columns[0]['share: ' + kind]:>7.1%}" + "".join(f"{figure:>28.2f}" for figure in figures)
              + "".join(f"{cost:>22.1%}" for cost in costs))
    print("answers kept: " + ", ".join(f"{name} {variant} {column[variant + ': kept']:,.0f}"
                                       for name, column in zip(names, columns) for variant in VARIANTS))
    print("  ".join(f"{name}: {checkout}" for name, checkout in zip(names, checkouts)))


if __name__ == "__main__":
    main()
