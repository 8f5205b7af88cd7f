"""Answers made ahead: the questions the kubernetes plugin lists, and pipelines that answer them before anyone asks."""

from __future__ import annotations

import asyncio

import dns.message
import pytest
from dnslib import QTYPE

from dns_server.cluster.records import Endpoint, EndpointSlice, Namespace, Port, Record, Service
from dns_server.config.model import Config, ServerBlock, ZoneKey
from dns_server.plugins import chain_for
from dns_server.protocol.wire import stub_query
from dns_server.serving.answer_table import AnswerTable
from dns_server.serving.router import Pipeline
from dns_server.serving.runtime import Runtime
from dns_server.serving.warmup import Warmup
from tests.cluster_data import registry_with
from tests.doubles import block, pipeline_for, reply_of

A, AAAA, SRV = QTYPE.A, QTYPE.AAAA, QTYPE.SRV
HTTP = Port("http", "TCP", 80)
DNS_UDP = Port("dns", "UDP", 53)
UNNAMED = Port("", "TCP", 8080)
RECORDS: list[Record] = [
    Namespace("shop"),
    Service("shop", "web", ("10.96.0.10",), False, "", (HTTP, DNS_UDP, UNNAMED)),
    Service("shop", "db", (), True, "", ()),
    EndpointSlice("shop", "db-1", "db", (Endpoint(("10.1.0.5",), True, "db-0", ""),), (Port("pg", "TCP", 5432),)),
    Service("shop", "ext", (), False, "api.example.com", ()),
]


def questions(records: list[Record], services: list[tuple[str, str]] | None = None,
              **options: object) -> list[tuple[str, int]]:
    snapshot = registry_with(records).snapshot
    return list(chain_for(block(**options)).stub_questions(snapshot, services))


def test_every_service_gets_a_and_aaaa_and_srv_for_each_named_port_but_an_external_name_nothing() -> None:
    assert sorted(questions(RECORDS)) == sorted([
        ("web.shop.svc.cluster.local", A), ("web.shop.svc.cluster.local", AAAA),
        ("_http._tcp.web.shop.svc.cluster.local", SRV), ("_dns._udp.web.shop.svc.cluster.local", SRV),
        ("db.shop.svc.cluster.local", A), ("db.shop.svc.cluster.local", AAAA),
        ("_pg._tcp.db.shop.svc.cluster.local", SRV),  # a headless service's ports are its endpoints'
    ])


def test_only_the_services_asked_for_and_under_the_cluster_domain() -> None:
    assert questions(RECORDS, [("shop", "db"), ("shop", "gone")], zones=("example.internal",)) == [
        ("db.shop.svc.example.internal", A),
        ("db.shop.svc.example.internal", AAAA), ("_pg._tcp.db.shop.svc.example.internal", SRV)]


def answered_ahead(records: list[Record], table: AnswerTable | None = None) -> tuple[Pipeline, Warmup]:
    """A pipeline over `records` once the questions its block lists are answered ahead."""
    pipeline = pipeline_for(records, table=table)
    warmup = Warmup(starting=True, synced=lambda: True)
    (_, served), *_ = pipeline.routes
    warmup.add(pipeline, served.chain.stub_questions(served.view.snapshot, None))

    async def run() -> None:
        task = asyncio.create_task(warmup.run())
        while warmup.starting:
            await asyncio.sleep(0)
        task.cancel()

    asyncio.run(run())
    return pipeline, warmup


def test_a_question_answered_ahead_is_an_exact_hit_with_the_very_reply_a_query_gets() -> None:
    """Compared with a pipeline that never answered ahead, byte for byte, for every question listed."""
    warm, warmup = answered_ahead(RECORDS)
    cold = pipeline_for(RECORDS)
    listed = questions(RECORDS)
    assert warmup.answered == len(listed) and not warmup.starting
    for name, qtype in listed:
        data = stub_query(name, qtype)
        assert data[2:] in warm.table.exact_udp
        query_id = b"\x12\x34"
        assert warm.handle(query_id + data[2:], False) == cold.handle(query_id + data[2:], False)
    reply = dns.message.from_wire(reply_of(warm, stub_query("web.shop.svc.cluster.local", A)))
    assert [rrset.to_text() for rrset in reply.answer] == ["web.shop.svc.cluster.local. 5 IN A 10.96.0.10"]


def test_answering_ahead_counts_no_query_and_no_miss() -> None:
    warm, _ = answered_ahead(RECORDS)
    assert warm.table.counters.misses == 0 and warm.table.counters.hits == 0


def test_answers_made_ahead_fill_at_most_half_the_table() -> None:
    services = [Service("shop", f"s{i}", (f"10.97.0.{i}",), False, "", ()) for i in range(40)]
    records: list[Record] = [Namespace("shop"), *services]
    pipeline, _ = answered_ahead(records, AnswerTable(max_entries=20))
    assert len(pipeline.table) == 10


def test_a_start_is_warm_only_once_every_cluster_synced_and_its_questions_are_answered() -> None:
    synced = False
    told: list[bool] = []
    warmup = Warmup(starting=True, synced=lambda: synced)
    warmup.on_warm = lambda: told.append(True)

    async def run() -> None:
        nonlocal synced
        task = asyncio.create_task(warmup.run())
        for _ in range(5):
            await asyncio.sleep(0)
        assert warmup.starting and not told  # nothing to answer yet, but the data is not synced
        synced = True
        warmup.add(pipeline_for(RECORDS), [])  # synced, with no question to answer ahead
        for _ in range(5):
            await asyncio.sleep(0)
        task.cancel()

    asyncio.run(run())
    assert not warmup.starting and told == [True]


@pytest.mark.parametrize("name", ["bad..name.svc.cluster.local", "x" * 64 + ".shop.svc.cluster.local"])
def test_a_name_no_query_can_carry_is_skipped(name: str) -> None:
    pipeline = pipeline_for(RECORDS)
    pipeline.answer_ahead((name, A))
    assert len(pipeline.table) == 0


def test_a_question_kept_already_is_left_alone() -> None:
    pipeline = pipeline_for(RECORDS)
    data = stub_query("web.shop.svc.cluster.local", A)
    first = pipeline.handle(data, False)
    entry = next(iter(pipeline.table.entries.values()))
    pipeline.answer_ahead(("web.shop.svc.cluster.local", A))
    assert next(iter(pipeline.table.entries.values())) is entry and pipeline.handle(data, False) == first


def test_a_block_without_kubernetes_lists_nothing() -> None:
    assert list(chain_for(block(kubernetes=None)).stub_questions(registry_with(RECORDS).snapshot)) == []


def test_a_started_runtime_is_not_ready_until_its_first_warm_up_is_done() -> None:
    runtime = Runtime(Config((ServerBlock((ZoneKey(""),)),)))
    assert runtime.not_ready() == []  # a reload's runtime: nothing to wait for
    runtime.warmup = Warmup(starting=True, synced=runtime.synced)
    assert runtime.not_ready() == ["kubernetes"]
    asyncio.run(_first_turn(runtime.warmup))
    assert runtime.not_ready() == []


async def _first_turn(warmup: Warmup) -> None:
    task = asyncio.create_task(warmup.run())
    await asyncio.sleep(0)
    task.cancel()
