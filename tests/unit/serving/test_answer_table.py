"""The answer table (pure): entries kept across snapshots, dropped by dependency, restamped with the
serial, exact-bytes replies that go with their entry, eviction oldest first."""

from __future__ import annotations

import dns.flags
import dns.message
import pytest

from dns_server.cluster.records import Service
from dns_server.cluster.registry import Registry
from dns_server.cluster.snapshot import HOSTS, SYNCED, Change, Snapshot
from dns_server.cluster.updates import Put
from dns_server.plugins.bufsize import bufsize_of
from dns_server.protocol.answer import Dependency
from dns_server.protocol.encode import encode, fit, patch_serial
from dns_server.protocol.wire import decode_query, question_key
from dns_server.serving.answer_table import (
    MAX_EXACT_PER_ENTRY,
    AnswerCacheCounters,
    AnswerTable,
    Entry,
    View,
)
from tests.cluster_data import (
    example_records,
    headless_manifest,
    records_from,
    registry_with,
)
from tests.doubles import Z, block, resolve

VIEW = View(Snapshot.empty(synced=True))
A, B = ("service", "shop", "a"), ("service", "shop", "b")


def entry(*deps: Dependency, view: View = VIEW, wire: bytes = b"reply") -> Entry:
    return Entry(wire, -1, view, frozenset(deps), 1232)


def table_with(**entries: Entry) -> AnswerTable:
    table = AnswerTable()
    for key, value in entries.items():
        table.put(key.encode(), value)
    return table


@pytest.mark.parametrize("change, dropped", [
    (Change(services=frozenset({("shop", "a")})), {"a", "ab"}),
    (Change(services=frozenset({("shop", "a"), ("shop", "b")})), {"a", "b", "ab"}),
    (Change(namespaces=frozenset({"shop"})), {"ns"}),
    (Change(pods=frozenset({("shop", "10.244.1.5")})), {"pod"}),
    (Change(addresses=frozenset({"10.96.0.1"})), {"address"}),
    (Change(synced=True), {"unsynced"}),
    (Change(hosts=True), {"hosts"}),
    (Change(services=frozenset({("shop", "c")})), set()),  # read by nobody
])
def test_a_change_drops_exactly_the_entries_that_read_what_it_touched(change: Change, dropped: set[str]) -> None:
    entries = dict(a=entry(A), b=entry(B), ab=entry(A, B), ns=entry(("namespace", "shop")),
                   pod=entry(("pod", "shop", "10.244.1.5")), address=entry(("address", "10.96.0.1")),
                   unsynced=entry(SYNCED, ("service", "shop", "u")), hosts=entry(HOSTS), none=entry())
    table = table_with(**entries)
    table.publish(VIEW, change, False)
    assert {key.decode() for key in table.entries} == set(entries) - dropped
    assert all(table.entries[key.encode()] is entries[key] for key in set(entries) - dropped)  # kept as they were
    assert table.counters.invalidations == len(dropped)


def test_an_entry_replaced_under_its_key_no_longer_answers_to_the_old_dependencies() -> None:
    table = AnswerTable()
    table.put(b"k", entry(A))
    newer = entry(B)
    table.put(b"k", newer)
    table.publish(VIEW, Change(services=frozenset({("shop", "a")})), False)
    assert table.entries[b"k"] is newer and table.counters.invalidations == 0
    table.publish(VIEW, Change(services=frozenset({("shop", "b")})), False)
    assert b"k" not in table.entries and table.counters.invalidations == 1


def test_exact_replies_go_with_their_entry() -> None:
    table = AnswerTable()
    dropped, kept = entry(A), entry(B)
    table.put(b"a", dropped)
    table.put(b"b", kept)
    table.remember(dropped, False, b"query a udp", b"reply a", None)
    table.remember(dropped, True, b"query a tcp", b"reply a", None)
    table.remember(kept, False, b"query b", b"reply b", None)
    table.publish(VIEW, Change(services=frozenset({("shop", "a")})), False)
    assert set(table.exact_udp) == {b"query b"} and not table.exact_tcp
    assert table.exact_udp[b"query b"].tail == b"reply b"


def test_at_most_a_few_exact_replies_per_entry() -> None:
    table = AnswerTable()
    one = entry(A)
    table.put(b"a", one)
    for i in range(MAX_EXACT_PER_ENTRY + 3):  # case and EDNS variants of one question
        table.remember(one, False, b"variant %d" % i, b"reply", None)
    assert len(table.exact_udp) == MAX_EXACT_PER_ENTRY == 8
    assert set(table.exact_udp) == {b"variant %d" % i for i in range(MAX_EXACT_PER_ENTRY)}  # the first ones


def test_the_exact_replies_are_bounded() -> None:
    table = AnswerTable(max_exact=3)
    for i in range(4):
        kept = entry(A)
        table.put(b"%d" % i, kept)
        table.remember(kept, False, b"query %d" % i, b"reply", None)
    assert set(table.exact_udp) == {b"query 3"}  # full: all dropped, then the new one kept
    assert len(table) == 4  # the entries stay


def test_an_entry_whose_exact_replies_the_bound_dropped_is_dropped_cleanly() -> None:
    table = AnswerTable(max_exact=1)
    first, second = entry(A), entry(B)
    table.put(b"a", first)
    table.put(b"b", second)
    table.remember(first, False, b"query a", b"reply a", None)
    table.remember(second, False, b"query b", b"reply b", None)  # the bound drops "query a"
    table.publish(VIEW, Change(services=frozenset({("shop", "a")})), False)
    assert set(table.entries) == {b"b"} and set(table.exact_udp) == {b"query b"}


def test_forwarded_entries_and_rotations_not_given_are_not_kept_by_exact_bytes() -> None:
    """A forwarded reply ages; a loadbalanced one is kept only with every rotation."""
    table = AnswerTable()
    rotating = Entry(b"r0", -1, VIEW, frozenset(), 1232, rotations=(b"r0", b"r1"))
    forwarded = Entry(b"", -1, VIEW, frozenset(), 1232, forward=object())
    for kept in (rotating, forwarded):
        table.remember(kept, False, b"query", b"reply", None)
    assert not table.exact_udp


def test_a_loadbalanced_exact_reply_turns_from_where_its_entry_was() -> None:
    table = AnswerTable()
    rotating = Entry(b"r0", -1, VIEW, frozenset(), 1232, rotations=(b"r0", b"r1", b"r2"))
    taken = rotating.reply(65535)
    table.remember(rotating, False, b"query", taken, None, (b"t0", b"t1", b"t2"))
    assert taken == b"r1" and [table.exact_udp[b"query"].tail for _ in range(4)] == [b"t2", b"t0", b"t1", b"t2"]


def test_eviction_drops_the_oldest_eighth_with_their_exact_replies() -> None:
    table = AnswerTable(max_entries=16)
    for i in range(16):
        kept = entry(("service", "shop", f"s{i}"))
        table.put(b"%02d" % i, kept)
        table.remember(kept, False, b"query %02d" % i, b"reply", None)
    assert table.get(b"00") is not None  # a lookup does not make an entry younger
    table.put(b"16", entry())
    assert sorted(table.entries) == [b"%02d" % i for i in range(2, 17)]
    assert table.counters.evictions == 2
    assert b"query 00" not in table.exact_udp and b"query 01" not in table.exact_udp and b"query 02" in table.exact_udp
    table.publish(VIEW, Change(services=frozenset({("shop", "s0")})), False)
    assert table.counters.invalidations == 0  # an evicted entry is not counted again


def test_a_full_table_of_eight_or_fewer_evicts_one() -> None:
    table = AnswerTable(max_entries=3)
    for i in range(4):
        table.put(b"%d" % i, entry())
    assert sorted(table.entries) == [b"1", b"2", b"3"] and table.counters.evictions == 1
    table.put(b"4", entry())
    assert sorted(table.entries) == [b"2", b"3", b"4"] and table.counters.evictions == 2


def test_hits_and_misses_are_counted_once_each_into_the_counters_given() -> None:
    counters = AnswerCacheCounters()
    table = AnswerTable(counters=counters)
    table.put(b"k", entry())
    table.get(b"k")
    table.get(b"k")
    table.get(b"missing")
    table.get(b"missing")
    assert (counters.hits, counters.misses) == (2, 2) and table.counters is counters


def test_an_exact_reply_carries_the_tally_it_is_counted_in() -> None:
    table = AnswerTable()
    kept, tally = entry(), object()
    table.put(b"k", kept)
    table.remember(kept, False, b"query", b"reply", tally)
    assert table.exact_udp[b"query"].tally is tally


# -- the SOA serial ---------------------------------------------------------------------------------
def negative_entry(view: View, name: str = f"nope.shop.svc.{Z}") -> tuple[bytes, Entry, bytes]:
    """(question key, entry, query bytes) for a negative answer, resolved and encoded as the pipeline does."""
    message = dns.message.make_query(name, "A")
    message.id = 0x1234
    data = message.to_wire()
    query = decode_query(data)
    settings = block()
    snapshot = view.snapshot
    answer = resolve(query.name, query.qtype, snapshot, settings)
    encoded = encode(query, answer, bufsize_of(settings))
    return question_key(query), Entry(encoded.wire, encoded.serial_at, view, answer.depends, bufsize_of(settings),
                                      serial=snapshot.serial), data


def fresh_wire(view: View, name: str = f"nope.shop.svc.{Z}") -> bytes:
    return negative_entry(view, name)[1].wire


def kept_negative(view: View, tail_end: int | None = None) -> tuple[AnswerTable, bytes, Entry, bytes]:
    """(table, key, entry, query bytes): a table keeping a negative answer and its exact UDP reply (that reply
    cut to `tail_end`, if given)."""
    table = AnswerTable()
    key, kept, data = negative_entry(view)
    table.put(key, kept)
    table.remember(kept, False, data[2:], kept.wire[2:tail_end], None)
    return table, key, kept, data


def change_at_42(registry: Registry, view: View) -> None:
    """A new service at t = 1,700,000,042.7 (the serial becomes 1,700,000,042), seen by `view`."""
    registry.apply([Put(Service("shop", "other", ("10.96.10.98",), False, "", ()))], now=1_700_000_042.7)
    view.snapshot = registry.snapshot


def test_a_negative_answer_served_after_a_serial_change_carries_the_new_serial() -> None:
    registry = registry_with(example_records())
    view = View(registry.snapshot)
    table, key, kept, data = kept_negative(view)
    before = kept.wire
    assert kept.serial_at >= 0
    changes: list[Change] = []
    registry.subscribe(lambda snapshot, change: changes.append(change))
    change_at_42(registry, view)
    table.publish(view, changes[0], True)
    fresh = fresh_wire(view)
    assert fresh != before
    assert table.exact_udp[data[2:]].tail == before[2:]  # not yet: restamped when the router asks
    assert table.restamp() is False
    assert table.exact_udp[data[2:]].tail == fresh[2:]  # its exact reply restamped in place, as a fresh encode
    served = table.get(key)
    assert served is kept and served.serial == 1_700_000_042
    assert served.reply(65535) == fresh  # byte for byte a fresh encode


def test_a_new_serial_is_written_a_given_number_of_entries_at_a_time() -> None:
    """`restamp(count)` does `count` entries and says whether any are left; those restamped are
    restamped again by the next serial change, those left get the newest serial."""
    registry = registry_with(example_records())
    view = View(registry.snapshot)
    table = AnswerTable()
    queries = []
    for name in ("nope", "nada", "nix"):
        key, kept, data = negative_entry(view, f"{name}.shop.svc.{Z}")
        table.put(key, kept)
        table.remember(kept, False, data[2:], kept.wire[2:], None)
        queries.append(data)
    change_at_42(registry, view)
    table.publish(view, Change(services=frozenset({("shop", "other")})), True)

    def serials() -> list[int]:
        return [_serial_of(table.exact_udp[q[2:]].tail) for q in queries]

    assert serials() == [1_700_000_000] * 3
    assert table.restamp(2) is True
    assert sorted(serials()) == [1_700_000_000, 1_700_000_042, 1_700_000_042]
    registry.apply([Put(Service("shop", "fourth", ("10.96.10.96",), False, "", ()))], now=1_700_000_077.1)
    view.snapshot = registry.snapshot
    table.publish(view, Change(services=frozenset({("shop", "fourth")})), True)
    assert table.restamp(10) is False
    assert serials() == [1_700_000_077] * 3


def _serial_of(tail: bytes) -> int:
    """The SOA serial of a negative reply after its ID: dnspython reads it."""
    reply = dns.message.from_wire(b"\x00\x00" + tail)
    return int(reply.authority[0][0].serial)


def test_a_cut_exact_reply_is_dropped_when_the_serial_changes() -> None:
    """A reply cut for a small client has its records elsewhere: it goes, and is cut again when asked."""
    registry = registry_with(example_records())
    view = View(registry.snapshot)
    table, key, kept, data = kept_negative(view, tail_end=-1)  # any tail shorter than the whole reply
    change_at_42(registry, view)
    table.publish(view, Change(services=frozenset({("shop", "other")})), True)
    table.restamp()
    assert data[2:] not in table.exact_udp and table.get(key) is kept


def test_a_serial_change_of_another_view_leaves_the_exact_replies_alone() -> None:
    registry = registry_with(example_records())
    view, other = View(registry.snapshot), View(Snapshot.empty(synced=True))
    table, _, kept, data = kept_negative(view)
    before = kept.wire
    table.publish(other, Change(), True)
    table.restamp()
    assert table.exact_udp[data[2:]].tail == before[2:] and kept.wire == before
    assert kept.serial == registry.snapshot.serial


def test_an_entry_is_restamped_when_it_is_looked_up_after_a_serial_change() -> None:
    registry = registry_with(example_records())
    view = View(registry.snapshot)
    table = AnswerTable()
    key, kept, _ = negative_entry(view)
    table.put(key, kept)
    change_at_42(registry, view)
    served = table.get(key)
    assert served is kept and kept.serial == 1_700_000_042 and kept.wire == fresh_wire(view)


def test_a_restamped_entry_is_cut_afresh_for_a_small_client() -> None:
    registry = registry_with(example_records())
    view = View(registry.snapshot)
    _, kept, _ = negative_entry(view)
    small = len(kept.wire) - 1
    assert kept.reply(small) == fit(kept.wire, small)
    kept.restamp(1_700_000_099)
    assert kept.reply(small) == fit(kept.wire, small) and kept.wire == patch_serial(fresh_wire(view), kept.serial_at,
                                                                                       1_700_000_099)


def test_rotations_are_restamped_with_the_reply() -> None:
    registry = registry_with(example_records())
    view = View(registry.snapshot)
    _, negative, _ = negative_entry(view)
    kept = Entry(negative.wire, negative.serial_at, view, frozenset(), 1232,
                 rotations=(negative.wire, negative.wire), serial=negative.serial)
    kept.restamp(1_700_000_099)
    restamped = patch_serial(negative.wire, negative.serial_at, 1_700_000_099)
    assert kept.rotations == (restamped, restamped) and kept.reply(65535) == restamped


def test_an_exact_reply_dropped_by_the_bound_does_not_stop_the_others_being_restamped() -> None:
    registry = registry_with(example_records())
    view = View(registry.snapshot)
    table, key, kept, data = kept_negative(view)
    table.remember(kept, True, data[2:], kept.wire[2:], None)
    table.exact_udp.clear()  # what the bound on exact replies does when it is reached
    change_at_42(registry, view)
    table.publish(view, Change(services=frozenset({("shop", "other")})), True)
    table.restamp()
    assert table.exact_tcp[data[2:]].tail == fresh_wire(view)[2:]
    table.publish(view, Change(services=frozenset({("shop", "nope")}), namespaces=frozenset({"shop"})), False)
    assert key not in table.entries and not table.exact_tcp  # dropped with its entry, the missing one skipped


def test_an_entry_without_a_serial_is_not_restamped() -> None:
    view = View(registry_with(example_records()).snapshot)
    wire = b"\x00\x00positive reply"
    kept = Entry(wire, -1, view, frozenset(), 1232)
    table = table_with(k=kept)
    view.snapshot = Snapshot(view.snapshot.serial + 10, True, frozenset(), {}, {})
    assert table.get(b"k") is kept and kept.wire == wire


def test_rotations_are_served_in_turn() -> None:
    rotating = Entry(b"r0", -1, VIEW, frozenset(), 1232, rotations=(b"r0", b"r1", b"r2"))
    assert [rotating.reply(65535) for _ in range(4)] == [b"r1", b"r2", b"r0", b"r1"]


def test_a_rotation_too_big_for_the_client_is_cut_to_its_limit() -> None:
    snapshot = registry_with(records_from(headless_manifest("big", "shop", 40))).snapshot
    query = decode_query(dns.message.make_query(f"big.shop.svc.{Z}", "A").to_wire())
    settings = block()
    wire = encode(query, resolve(query.name, query.qtype, snapshot, settings), bufsize_of(settings)).wire
    assert len(wire) > 512
    rotating = Entry(wire, -1, VIEW, frozenset(), 1232, rotations=(wire, wire))
    cut = rotating.reply(512)
    assert cut == fit(wire, 512) and len(cut) <= 512 and dns.message.from_wire(cut).flags & dns.flags.TC
    assert rotating.reply(1232) == fit(wire, 1232) and rotating.reply(65535) == wire


def test_questions_kept_per_namespace_share_the_tables_room_and_its_invalidation() -> None:
    """A question's namespaces make one item; a change of what any of them read drops them all."""
    table = AnswerTable(max_entries=16)
    for i in range(8):
        table.put(b"p%02d" % i, entry(("service", "shop", f"s{i}")))
        for namespace in ("shop", "data", None):
            table.put_for_namespace(b"n%02d" % i, namespace, entry(("service", str(namespace), f"s{i}")), None)
    assert len(table) == 16
    table.put(b"p08", entry())
    assert b"p00" not in table.entries and b"n00" not in table.namespaced and table.counters.evictions == 2
    table.publish(VIEW, Change(services=frozenset({("data", "s1")})), False)
    assert b"n01" not in table.namespaced and b"p01" in table.entries and table.counters.invalidations == 1
    group = table.namespaced[b"n02"]
    assert table.for_namespace(group, "shop") is group.by_namespace["shop"]
    assert table.for_namespace(group, "web") is None and table.get(b"n02") is None
    assert (table.counters.hits, table.counters.misses) == (1, 1)  # the namespace missed, not the question twice
    table.put(b"n02", entry())  # the answer no longer depends on the namespace: it replaces them all
    assert b"n02" not in table.namespaced and table.get(b"n02") is not None
