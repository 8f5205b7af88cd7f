"""Encoding cost: the median time `encode` takes for typical cluster answers, two checkouts side by side.

    .venv/bin/python bench/encode.py --against ../other-checkout [--number 2000] [--repeat 15] [--rounds 3]

Every change of the cluster makes the server encode its answers afresh, so this is the cost of a
cold answer, less resolving.  Each checkout is measured in processes of its own with that
checkout first on `sys.path`, with `timeit`: the median over `--repeat` runs of `--number` calls,
in `--rounds` processes per checkout taken in turns, and the median over those.  The
shapes are one A record, a headless service of 5 A records, SRV for 5 endpoints with their
addresses in the additional section, NXDOMAIN with the zone's SOA, and a PTR; each is asked with
EDNS (1232 bytes).  Reply sizes are printed too (compression differs).

The checkout's encoder is found by its interface: `encode(query, Answer, bufsize) -> Encoded`
(dns_server/answer.py), or the earlier `encode(query, resolver.Answer, max_payload) -> bytes`.
The machine is shared: compare the two columns of one run, not figures across runs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import timeit
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
Z = "cluster.local"
SOA = (Z, 6, 5, (f"ns.dns.{Z}", f"hostmaster.{Z}", 1767225600, 7200, 1800, 86400, 5))
ENDPOINTS = [(f"10-244-{i}-7.db.shop.svc.{Z}", f"10.244.{i}.7") for i in range(5)]
# name, qname, qtype, outcome, answer, authority, additional; records as (name, rtype, ttl, data)
SHAPES: list[tuple[str, str, str, str, list[Any], list[Any], list[Any]]] = [
    ("one A", f"web.shop.svc.{Z}", "A", "ANSWER", [(f"web.shop.svc.{Z}", 1, 5, "10.96.10.20")], [], []),
    ("headless, 5 A", f"db.shop.svc.{Z}", "A", "ANSWER",
     [(f"db.shop.svc.{Z}", 1, 5, address) for _, address in ENDPOINTS], [], []),
    ("SRV, 5 targets + additional", f"_pg._tcp.db.shop.svc.{Z}", "SRV", "ANSWER",
     [(f"_pg._tcp.db.shop.svc.{Z}", 33, 5, (0, 20, 5432, name)) for name, _ in ENDPOINTS], [],
     [(name, 1, 5, address) for name, address in ENDPOINTS]),
    ("NXDOMAIN with SOA", f"api.github.com.shop.svc.{Z}", "A", "NXDOMAIN", [], [SOA], []),
    ("PTR", "20.10.96.10.in-addr.arpa", "PTR", "ANSWER",
     [("20.10.96.10.in-addr.arpa", 12, 5, f"web.shop.svc.{Z}")], [], []),
]
BUFSIZE = 1232


def _module(name: str, flat: str) -> Any:
    """A module of the checkout on sys.path, by its packaged name or, in an older checkout, its flat one."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        return importlib.import_module(flat)


def encoder_calls() -> dict[str, tuple[Callable[[], object], int]]:
    """Per shape: a call encoding it with the `dns_server` on sys.path, and its reply's size."""
    import dns.message

    # either interface (see the module docstring), and either layout (flat modules before the packages)
    decode_query = _module("dns_server.protocol.wire", "dns_server.wire").decode_query
    encoding: Any = _module("dns_server.protocol.encode", "dns_server.encode")
    new_interface = hasattr(encoding, "Encoded")
    model: Any = (_module("dns_server.protocol.answer", "dns_server.answer") if new_interface
                  else importlib.import_module("dns_server.resolver"))
    calls: dict[str, tuple[Callable[[], object], int]] = {}
    for name, qname, qtype, outcome, *records in SHAPES:
        query = decode_query(dns.message.make_query(qname, qtype, use_edns=0, payload=BUFSIZE).to_wire())
        answer, authority, additional = (tuple(model.RR(*rr) for rr in section) for section in records)
        if new_interface:
            value = model.Answer(model.Outcome[outcome], answer, authority, additional)
            size = len(encoding.encode(query, value, BUFSIZE).wire)
        else:
            value = model.Answer(3 if outcome == "NXDOMAIN" else 0, answer, authority, additional)
            size = len(encoding.encode(query, value, BUFSIZE))

        def call(query: Any = query, value: Any = value) -> object:
            return encoding.encode(query, value, BUFSIZE)

        calls[name] = (call, size)
    return calls


def measure(number: int, repeat: int) -> dict[str, tuple[float, int]]:
    """Median microseconds per call, and the reply size, for each shape."""
    results = {}
    for name, (call, size) in encoder_calls().items():
        runs = timeit.repeat(call, number=number, repeat=repeat)
        results[name] = (statistics.median(runs) / number * 1e6, size)
    return results


def measured_in(checkout: Path, number: int, repeat: int) -> dict[str, tuple[float, int]]:
    """`measure` run in a process of its own, with `checkout`'s dns_server imported."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    output = subprocess.run([sys.executable, __file__, "--measure", "--number", str(number), "--repeat", str(repeat)],
                            cwd=checkout, env=env, check=True, capture_output=True, text=True).stdout
    return {name: (float(us), int(size)) for name, (us, size) in json.loads(output).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", type=Path, help="the other checkout (say, a worktree of the last release)")
    parser.add_argument("--number", type=int, default=2000, help="calls per timing run")
    parser.add_argument("--repeat", type=int, default=15, help="timing runs per shape")
    parser.add_argument("--rounds", type=int, default=3, help="processes per checkout, taken in turns")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.number, args.repeat)))
        return
    if args.against is None:
        parser.error("--against: which checkout to compare with")
    if not (args.against / "dns_server" / "encode.py").is_file():
        sys.exit(f"bench: {args.against} is not a checkout of this project")
    rounds: list[tuple[dict[str, tuple[float, int]], dict[str, tuple[float, int]]]] = []
    for _ in range(args.rounds):  # alternating, so a burst of load on the machine falls on both alike
        rounds.append((measured_in(args.against.resolve(), args.number, args.repeat),
                       measured_in(REPO, args.number, args.repeat)))
    other, this = ({name: (statistics.median(side[name][0] for side in sides), sides[0][name][1])
                    for name in sides[0]} for sides in zip(*rounds))
    print(f"{'answer':<30} {'other us':>9} {'this us':>9} {'speed-up':>9} {'other B':>8} {'this B':>7}")
    for name in this:
        (old_us, old_size), (new_us, new_size) = other[name], this[name]
        print(f"{name:<30} {old_us:>9.2f} {new_us:>9.2f} {old_us / new_us:>8.1f}x {old_size:>8} {new_size:>7}")
    print(f"other: {args.against.resolve()}   this: {REPO}")


if __name__ == "__main__":
    main()
