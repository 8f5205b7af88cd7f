"""A block's outbound side (the `cache` plugin in front of its `forward` directives), socket-free.

The forwarders are tests/unit/helpers.py's `FakeForwarder` (answers from a table, held at a gate
when a test needs an exchange in flight); the cache is the real ForwardCache; time is a clock the
test moves.  Covers shared exchanges, `next`, serve-stale in both modes, prefetch, and no cache.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, TypeVar

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from dns_server.plugins.cache import CacheSettings
from dns_server.plugins.forward.outbound import Outbound
from dns_server.plugins.forward.setup import ForwardSettings
from dns_server.plugins.forward.upstreams import NoAnswer, Overloaded
from dns_server.protocol.codes import NXDOMAIN, SERVFAIL
from dns_server.protocol.wire import decode_query, question_key
from tests.clock import Clock
from tests.doubles import FakeForwarder, block, canned_reply, forward_to, outbound_for

T = TypeVar("T")
NAME = "www.example.com"
LIMIT = 65535
DEADLINE = 10.0  # generous: what has not happened by then never will


def key_of(name: str = NAME, qtype: str = "A") -> bytes:
    return question_key(decode_query(dns.message.make_query(name, qtype).to_wire()))


def with_ttl(ttl: int, address: str = "192.0.2.10") -> Callable[[dns.message.Message], dns.message.Message]:
    def respond(query: dns.message.Message) -> dns.message.Message:
        reply = dns.message.make_response(query)
        reply.answer.append(dns.rrset.from_text(query.question[0].name, ttl, "IN", "A", address))
        return reply
    return respond


def with_rcode(rcode: int) -> Callable[[dns.message.Message], dns.message.Message]:
    def respond(query: dns.message.Message) -> dns.message.Message:
        reply = dns.message.make_response(query)
        reply.set_rcode(rcode)
        return reply
    return respond


def side(cache: CacheSettings | None = CacheSettings(), forwards: tuple[ForwardSettings, ...] = (forward_to(),),
         clock: Clock | None = None) -> tuple[Outbound, list[FakeForwarder]]:
    fakes = [FakeForwarder(settings) for settings in forwards]
    return outbound_for(block(cache=cache, forward=forwards), fakes, clock), fakes


def run(test: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(test(), DEADLINE * 2))


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until `condition` holds; TimeoutError after DEADLINE seconds."""
    async with asyncio.timeout(DEADLINE):
        while not condition():
            await asyncio.sleep(0.001)


async def resolve(outbound: Outbound, name: str = NAME, index: int = 0) -> dns.message.Message:
    return dns.message.from_wire(await outbound.resolve(key_of(name), name, index, 512, False, LIMIT))


def answers(wire: bytes | None) -> list[tuple[str, int]]:
    assert wire is not None
    return [(rr.to_text(), rrset.ttl) for rrset in dns.message.from_wire(wire).answer for rr in rrset]


# -- shared exchanges -------------------------------------------------------------------------------
def test_identical_questions_in_flight_share_one_exchange() -> None:
    async def test() -> None:
        outbound, (fake,) = side()
        fake.gate = asyncio.Event()
        waiting = [asyncio.ensure_future(resolve(outbound)) for _ in range(3)]
        await until(lambda: len(fake.asked) == 1)
        other = asyncio.ensure_future(resolve(outbound, "api.payments.example.com"))  # another question: its own
        await until(lambda: len(fake.asked) == 2)
        fake.gate.set()
        replies = await asyncio.gather(*waiting, other)
        assert [reply.answer[0][0].to_text() for reply in replies] == ["192.0.2.10"] * 3 + ["192.0.2.20"]
        assert fake.asked == [f"{NAME}.", "api.payments.example.com."]
        await outbound.close()

    run(test)


def test_a_waiter_that_goes_away_takes_nothing_from_the_others() -> None:
    """The exchange runs in a task of its own: cancelling the first waiter leaves it running for the rest."""
    async def test() -> None:
        outbound, (fake,) = side()
        fake.gate = asyncio.Event()
        first = asyncio.ensure_future(resolve(outbound))
        await until(lambda: len(fake.asked) == 1)
        second = asyncio.ensure_future(resolve(outbound))
        await asyncio.sleep(0)
        first.cancel()
        fake.gate.set()
        assert (await second).answer[0][0].to_text() == "192.0.2.10"
        assert first.cancelled() and fake.asked == [f"{NAME}."]
        await outbound.close()

    run(test)


def test_an_exchange_nobody_waits_for_any_more_still_fills_the_cache() -> None:
    async def test() -> None:
        outbound, (fake,) = side()
        fake.gate = asyncio.Event()
        only = asyncio.ensure_future(resolve(outbound))
        await until(lambda: len(fake.asked) == 1)
        only.cancel()
        fake.gate.set()
        await until(lambda: outbound.cached(key_of(), LIMIT) is not None)
        assert answers(outbound.cached(key_of(), LIMIT)) == [("192.0.2.10", 300)]
        await outbound.close()

    run(test)


def test_a_failed_exchange_fails_every_waiter_and_the_next_question_asks_again() -> None:
    async def test() -> None:
        outbound, (fake,) = side()
        fake.gate = asyncio.Event()
        fake.fail = NoAnswer("read udp 192.0.2.53:53: i/o timeout")
        waiting = [asyncio.ensure_future(resolve(outbound)) for _ in range(2)]
        await until(lambda: len(fake.asked) == 1)
        fake.gate.set()
        for waiter in waiting:
            with pytest.raises(NoAnswer, match="i/o timeout"):
                await waiter
        fake.fail = None
        assert (await resolve(outbound)).answer
        assert len(fake.asked) == 2
        await outbound.close()

    run(test)


@pytest.mark.parametrize("error", [Overloaded(), NoAnswer("no upstream answered")])
def test_upstream_errors_reach_the_caller(error: Exception) -> None:
    async def test() -> None:
        outbound, (fake,) = side()
        fake.fail = error
        with pytest.raises(type(error)):
            await resolve(outbound)
        await outbound.close()

    run(test)


def test_an_unreadable_upstream_reply_is_no_answer() -> None:
    async def test() -> None:
        outbound, (fake,) = side()
        fake.respond = lambda query: b"\x00\x07\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00"  # promises a record
        with pytest.raises(NoAnswer, match="unreadable reply"):
            await resolve(outbound)
        await outbound.close()

    run(test)


def test_refuses_counts_a_rejection_when_the_forwarder_is_saturated() -> None:
    outbound, (fake,) = side()
    assert not outbound.refuses(0)
    fake.full = True
    assert outbound.refuses(0) and fake.metrics.rejections == 1


# -- next -----------------------------------------------------------------------------------------
NEXT = forward_to("", next_rcodes=frozenset({NXDOMAIN, SERVFAIL}))


@pytest.mark.parametrize("forwards, first_rcode, asked, rcode", [
    ((NEXT, forward_to()), dns.rcode.NXDOMAIN, [1, 1], dns.rcode.NOERROR),  # NXDOMAIN: the next one is asked
    ((NEXT, forward_to()), dns.rcode.SERVFAIL, [1, 1], dns.rcode.NOERROR),
    ((NEXT, forward_to()), dns.rcode.REFUSED, [1, 0], dns.rcode.REFUSED),  # not a `next` rcode: that is the reply
    ((NEXT, forward_to("example.org"), forward_to()), dns.rcode.NXDOMAIN, [1, 0, 1], dns.rcode.NOERROR),  # skips
    ((NEXT, forward_to("example.org")), dns.rcode.NXDOMAIN, [1, 0], dns.rcode.NXDOMAIN),  # none takes it: as is
    ((NEXT,), dns.rcode.NXDOMAIN, [1], dns.rcode.NXDOMAIN),
])
def test_next_passes_the_question_to_the_next_forward_that_takes_it(forwards: tuple[ForwardSettings, ...],
                                                                    first_rcode: int, asked: list[int],
                                                                    rcode: int) -> None:
    """CoreDNS's forward `next RCODE...`: the upstream's rcode sends the question on to the next forward."""
    async def test() -> None:
        outbound, fakes = side(forwards=forwards)
        fakes[0].respond = with_rcode(first_rcode)
        reply = await resolve(outbound)
        assert reply.rcode() == rcode
        assert [len(fake.asked) for fake in fakes] == asked
        await outbound.close()

    run(test)


# -- serve-stale ----------------------------------------------------------------------------------
def test_serve_stale_immediate_answers_at_once_with_ttl_0_and_refreshes_in_the_background() -> None:
    async def test() -> None:
        clock = Clock()
        outbound, (fake,) = side(CacheSettings(serve_stale=3600.0), clock=clock)
        fake.respond = with_ttl(60)
        await resolve(outbound)
        clock.now += 120  # expired a minute ago
        fake.respond = with_ttl(60, "192.0.2.99")
        assert answers(outbound.cached(key_of(), LIMIT)) == [("192.0.2.10", 0)]  # stale, served at once
        assert outbound.cache is not None and outbound.cache.stats.served_stale == 1
        await until(lambda: answers(outbound.cached(key_of(), LIMIT)) == [("192.0.2.99", 60)])
        assert len(fake.asked) == 2  # one refresh
        clock.now += 60 + 3600  # past the serve-stale window of the refreshed entry
        assert outbound.cached(key_of(), LIMIT) is None
        await outbound.close()

    run(test)


def test_serve_stale_verify_asks_upstream_first_and_serves_stale_only_when_it_fails() -> None:
    async def test() -> None:
        clock = Clock()
        outbound, (fake,) = side(CacheSettings(serve_stale=3600.0, serve_stale_verify=True), clock=clock)
        fake.respond = with_ttl(60)
        await resolve(outbound)
        clock.now += 120
        assert outbound.cached(key_of(), LIMIT) is None  # verify: not without asking upstream
        fake.fail = NoAnswer("timeout")
        stale = await resolve(outbound)
        assert [(rrset[0].to_text(), rrset.ttl) for rrset in stale.answer] == [("192.0.2.10", 0)]  # RFC 8767
        fake.fail, fake.respond = None, with_ttl(60, "192.0.2.99")
        fresh = await resolve(outbound)
        assert [(rrset[0].to_text(), rrset.ttl) for rrset in fresh.answer] == [("192.0.2.99", 60)]
        fake.fail = NoAnswer("timeout")
        clock.now += 60 + 3600  # past the window
        with pytest.raises(NoAnswer):
            await resolve(outbound)
        await outbound.close()

    run(test)


def test_without_serve_stale_an_expired_entry_is_asked_for_again() -> None:
    async def test() -> None:
        clock = Clock()
        outbound, (fake,) = side(clock=clock)
        fake.respond = with_ttl(60)
        await resolve(outbound)
        clock.now += 61
        assert outbound.cached(key_of(), LIMIT) is None
        fake.fail = NoAnswer("timeout")
        with pytest.raises(NoAnswer):
            await resolve(outbound)
        await outbound.close()

    run(test)


# -- prefetch ----------------------------------------------------------------------------------------
def test_prefetch_refreshes_a_popular_entry_before_it_expires() -> None:
    async def test() -> None:
        clock = Clock()
        outbound, (fake,) = side(CacheSettings(prefetch_amount=2), clock=clock)
        fake.respond = with_ttl(100)
        await resolve(outbound)
        clock.now += 50
        assert outbound.cached(key_of(), LIMIT) is not None
        await asyncio.sleep(0)
        assert len(fake.asked) == 1  # half its life left: no prefetch
        clock.now += 45  # 5% of its life left, and asked twice within a minute: popular
        fake.respond = with_ttl(100, "192.0.2.99")
        assert answers(outbound.cached(key_of(), LIMIT)) == [("192.0.2.10", 5)]  # served from the old entry
        await until(lambda: len(fake.asked) == 2)
        clock.now += 50  # past the old entry's expiry: the refreshed one serves
        await until(lambda: answers(outbound.cached(key_of(), LIMIT)) == [("192.0.2.99", 50)])
        assert len(fake.asked) == 2 and outbound.cache is not None and outbound.cache.stats.prefetches == 1
        await outbound.close()

    run(test)


@pytest.mark.parametrize("obstacle", ["saturated", "in flight"])
def test_prefetch_waits_when_the_forwarder_is_saturated_or_the_question_is_in_flight(obstacle: str) -> None:
    async def test() -> None:
        clock = Clock()
        outbound, (fake,) = side(CacheSettings(prefetch_amount=1), clock=clock)
        fake.respond = with_ttl(100)
        await resolve(outbound)
        clock.now += 95
        if obstacle == "saturated":
            fake.full = True
        else:
            fake.gate = asyncio.Event()
            pending = asyncio.ensure_future(outbound.resolve(key_of(), NAME, 0, 512, False, LIMIT))
            await until(lambda: len(fake.asked) == 2)
        assert outbound.cached(key_of(), LIMIT) is not None
        await asyncio.sleep(0.01)
        assert len(fake.asked) == (1 if obstacle == "saturated" else 2)  # no refresh of its own
        if obstacle == "in flight":
            assert fake.gate is not None
            fake.gate.set()
            await pending
        await outbound.close()

    run(test)


# -- no cache ------------------------------------------------------------------------------------------
def test_without_a_cache_nothing_is_kept() -> None:
    async def test() -> None:
        outbound, (fake,) = side(cache=None)
        fake.respond = with_ttl(86400)
        for _ in range(2):
            reply = await resolve(outbound)
            assert reply.answer[0].ttl == 86400  # as upstream gave it: no cap without a cache
            assert outbound.cached(key_of(), LIMIT) is None
        assert len(fake.asked) == 2
        await outbound.close()

    run(test)


def test_replies_are_served_to_the_clients_limit() -> None:
    async def test() -> None:
        outbound, (fake,) = side()
        fake.respond = canned_reply
        key = key_of("big.example.com", "TXT")
        whole = dns.message.from_wire(await outbound.resolve(key, "big.example.com", 0, 512, False, LIMIT))
        assert len(whole.answer[0]) == 6
        cut = outbound.cached(key, 512)  # from the cache, cut for a 512-byte client
        assert cut is not None and dns.message.from_wire(cut).flags & dns.flags.TC
        assert answers(cut) == [] and len(fake.asked) == 1
        udp = dns.message.from_wire(await outbound.resolve(key, "big.example.com", 0, 512, False, 512))
        assert udp.flags & dns.flags.TC and not udp.answer  # from upstream, cut alike
        await outbound.close()

    run(test)
