"""The first pass in this process: what a question never asked before costs, stage by stage, two checkouts side by side.

    .venv/bin/python bench/cold.py [--against ../other-checkout] [--repeat 7] [--rounds 3]

On the benchmark cluster (bench/cluster.py, loaded from its fixture files as `--fixtures` loads
them) and the distinct questions of run.py's query file (about 31,000 of its 100,000), asked as
dnsperf asks them (RD, no EDNS), through the flag-started server's one block.  Each repetition
takes a new, empty answer table and times, in CPU time of this thread, every question going
through one stage at a time, then through `Pipeline.handle` whole:

- decode: `read_plain` and `plain_query` (the hot path's read of a question the table lacks);
- resolve: the block's chain (`Chain.resolve`) and the admission checks;
- encode: `encode` of the answer, with the NSID hook the router calls;
- entry + index: the `Entry` and its place in the table and the dependency index;
- exact reply: the reply cut and patched for the query, remembered under its exact bytes;
- fresh, whole: `Pipeline.handle` on a new table (what the first pass costs per question; the
  garbage collector's young generations run as they would);
- cached: `Pipeline.handle` again for the same bytes (an exact hit).

Then, once, the server's warm-up priced: every service's stub questions answered ahead
(`answered_ahead`; not for a checkout from before it).

Figures are microseconds per question: the median and the least over every batch of
`--repeat` repetitions (load from others only adds, so the least is the steadier figure on a busy
machine).  With `--against`, each checkout is measured in processes of its own with that
checkout first on `sys.path`, in turns (`--rounds` per checkout), and the medians of the rounds
are printed side by side.  The machine is shared: compare columns of one run.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from common import checkouts_in_turns, checkouts_parser

BATCH = 1000  # questions timed together: many batches, so a burst of load on the machine moves few
STAGES = ("decode", "resolve", "encode", "entry + index", "exact reply", "fresh, whole", "cached")


def questions_and_block(fixtures: Path) -> tuple[list[bytes], Any]:
    """The query file's distinct questions as dnsperf sends them, and the flag-started server's block."""
    import dns.message
    from cluster import build_cluster, write_fixtures
    from queries import build_queries

    from dns_server.cli import build_parser, config_from_args
    from dns_server.cluster.registry import Registry
    from dns_server.cluster.sources.fixtures import FixtureSource
    from dns_server.plugins import chain_for
    from dns_server.serving.answer_table import View
    from dns_server.serving.router import Block

    cluster = build_cluster()
    write_fixtures(cluster, fixtures)
    settings = config_from_args(build_parser().parse_args([
        "--fixtures", str(fixtures), "--listen", "127.0.0.1:53", "--upstream", "192.0.2.1"])).blocks[0]
    registry = Registry(clock=time.time)
    FixtureSource(fixtures, registry).load()
    block = Block(settings, View(registry.snapshot), chain_for(settings))
    wires = [dns.message.make_query(name, qtype, id=index % 65536).to_wire()
             for index, (name, qtype) in enumerate(dict.fromkeys(build_queries(cluster)))]
    return wires, block


def stage_calls(block: Any) -> Callable[[list[bytes], Any], dict[str, float]]:
    """Times one batch of questions: seconds of CPU per stage, each stage fed the last one's results."""
    from dns_server.chain.chain import admission
    from dns_server.plugins.nsid import identified
    from dns_server.protocol.codes import MAX_TCP_MESSAGE
    from dns_server.protocol.encode import encode
    from dns_server.protocol.names import longest_zone
    from dns_server.protocol.wire import plain_query, read_plain
    from dns_server.serving.answer_table import AnswerTable, Entry
    from dns_server.serving.router import Labels, _as_asked

    zones = tuple(block.settings.zones)
    snapshot = block.view.snapshot
    labels = Labels("cluster.local.", "kubernetes")

    def batch(wires: list[bytes], pipeline: Any) -> dict[str, float]:
        clock = time.thread_time
        seconds: dict[str, float] = {}
        started = clock()
        plains = []
        for wire in wires:
            plain = read_plain(wire)
            assert plain is not None  # dnsperf's questions are plain ones
            plains.append(plain)
        queries = [plain_query(wire, *plain) for wire, plain in zip(wires, plains)]
        seconds["decode"] = clock() - started
        started = clock()
        answers = []
        for query in queries:
            admission(query, longest_zone(query.name, zones))
            answers.append(block.chain.resolve(query.name, query.qtype, snapshot, None, query.qclass, False))
        seconds["resolve"] = clock() - started
        started = clock()
        encoded = [encode(query, answer, block.bufsize) for query, answer in zip(queries, answers)]
        replies = [identified(reply.wire, block.nsid, plain[0], MAX_TCP_MESSAGE)
                   for reply, plain in zip(encoded, plains)]
        seconds["encode"] = clock() - started
        table = AnswerTable()
        started = clock()
        entries = []
        for reply, done, answer, plain in zip(replies, encoded, answers, plains):
            entry = Entry(reply, done.serial_at, block.view, answer.depends, block.bufsize, labels,
                          serial=snapshot.serial)
            table.put(plain[0], entry)
            entries.append(entry)
        seconds["entry + index"] = clock() - started
        started = clock()
        for wire, entry, (_, end, _) in zip(wires, entries, plains):
            table.remember(entry, False, wire[2:], _as_asked(wire, entry.reply(512), end)[2:], None)
        seconds["exact reply"] = clock() - started
        handle = pipeline.handle
        started = clock()
        for wire in wires:
            handle(wire, False)
        seconds["fresh, whole"] = clock() - started
        started = clock()
        for wire in wires:
            handle(wire, False)
        seconds["cached"] = clock() - started
        return {stage: spent / len(wires) * 1e6 for stage, spent in seconds.items()}

    return batch


def answered_ahead(block: Any) -> dict[str, float]:
    """What the server's warm-up costs (serving/warmup.py): every question the block's plugins list as
    worth answering ahead, answered through a new pipeline: how many, the CPU seconds, and how much
    the process's RSS grew with the answers kept in its table."""
    from dns_server.serving.router import Pipeline

    if not hasattr(block.chain, "stub_questions"):
        return {}  # a checkout from before the warm-up
    questions = block.chain.stub_questions(block.view.snapshot)
    pipeline = Pipeline([(zone, block) for zone in block.settings.zones])
    gc.collect()
    before = _rss_mb()
    started = time.thread_time()
    for question in questions:
        pipeline.answer_ahead(question)
    seconds = time.thread_time() - started
    gc.collect()
    return {"ahead": len(pipeline.table), "ahead s": seconds, "ahead MB": _rss_mb() - before}


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(repeat: int) -> dict[str, float]:
    """Median microseconds per question of each stage over every batch of `repeat` repetitions, with this
    process's checkout."""
    from dns_server.serving.router import Pipeline

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as temp:
        wires, block = questions_and_block(Path(temp) / "fixtures")
    batch = stage_calls(block)
    gc.collect()
    gc.freeze()  # the cluster data, as the server freezes it after loading (runtime.freeze_heap)
    runs = []
    for _ in range(repeat):
        pipeline = Pipeline([(zone, block) for zone in block.settings.zones])  # an empty answer table
        runs += [batch(wires[at:at + BATCH], pipeline) for at in range(0, len(wires), BATCH)]
    result = {stage: statistics.median(run[stage] for run in runs) for stage in STAGES}
    result |= {f"{stage} min": min(run[stage] for run in runs) for stage in STAGES}
    result["questions"] = len(wires)
    return result | answered_ahead(block)


def main() -> None:
    args = checkouts_parser(__doc__.split("\n\n")[0], 7, "repetitions over every question per process").parse_args()
    if args.measure:
        print(json.dumps(measure(args.repeat)))
        return
    names, checkouts, columns = checkouts_in_turns(__file__, args)
    print(f"{int(columns[0]['questions']):,} distinct questions, CPU microseconds per question "
          f"(median of {args.rounds} processes x {args.repeat} repetitions x batches of {BATCH})")
    print(f"{'stage':<16}" + "".join(f"{name + ' median':>14}{'min':>8}" for name in names))
    for stage in STAGES:
        print(f"{stage:<16}" + "".join(f"{column[stage]:>14.2f}{column[stage + ' min']:>8.2f}" for column in columns))
    print(f"{'fresh - cached':<16}" + "".join(
        f"{column['fresh, whole'] - column['cached']:>14.2f}{column['fresh, whole min'] - column['cached min']:>8.2f}"
        for column in columns))
    for name, column in zip(names, columns):
        if "ahead" not in column:
            continue
        print(f"{name}: the warm-up, every service's stub questions answered ahead: {column['ahead']:,.0f} answers, "
              f"{column['ahead s']:.2f} s of CPU, RSS +{column['ahead MB']:.1f} MB")
    print("  ".join(f"{name}: {checkout}" for name, checkout in zip(names, checkouts)))


if __name__ == "__main__":
    main()
