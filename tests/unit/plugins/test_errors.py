"""The `errors` plugin's lines and its consolidation, driven by a fake clock."""

from __future__ import annotations

import io
import json
import logging
from typing import Iterator

import pytest
from dnslib import QTYPE

from dns_server.config.model import format_duration
from dns_server.observability.logs import (
    JsonFormatter,
    Output,
    OutputHandler,
    TextFormatter,
)
from dns_server.plugins.errors import ConsolidateRule, ErrorLog, ErrorsSettings

TIMEOUT = "read udp 10.0.0.1:53->8.8.8.8:53: i/o timeout"
REFUSED = "dial tcp 172.20.162.108:53: connect: connection refused"
TIMEOUT_RE = "^read udp .* i/o timeout$"


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    """The lines the errors plugin writes, as text: its logger with our text handler, at debug level."""
    stream = io.StringIO()
    handler = OutputHandler(Output(stream))
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("dns_server.plugins.errors")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


def lines(stream: io.StringIO) -> list[str]:
    text = stream.getvalue().splitlines()
    stream.seek(0)
    stream.truncate()
    return text


def consolidating(*rules: ConsolidateRule, stacktrace: bool = False) -> ErrorLog:
    return ErrorLog(ErrorsSettings(consolidate=rules, stacktrace=stacktrace))


def test_every_failure_gets_coredns_line(out: io.StringIO) -> None:
    errors = ErrorLog(ErrorsSettings())
    errors.report(2, "example.org", QTYPE.A, TIMEOUT, now=0.0)
    errors.report(2, "kube-dns.kube-system.svc.cluster.local.default.svc.cluster.local", QTYPE.A, REFUSED, now=0.0)
    errors.report(5, "", QTYPE.NS, "refused", now=0.0)
    errors.report(2, "example.org", 9999, "x", now=0.0)
    assert lines(out) == [
        f"[ERROR] plugin/errors: 2 example.org. A: {TIMEOUT}",
        f"[ERROR] plugin/errors: 2 kube-dns.kube-system.svc.cluster.local.default.svc.cluster.local. A: {REFUSED}",
        "[ERROR] plugin/errors: 5 . NS: refused",
        "[ERROR] plugin/errors: 2 example.org. TYPE9999: x",
    ]


def test_json_lines_carry_the_failure_and_the_count_as_fields(out: io.StringIO) -> None:
    for handler in logging.getLogger("dns_server.plugins.errors").handlers:
        if isinstance(handler, OutputHandler):
            handler.setFormatter(JsonFormatter())
    errors = consolidating(ConsolidateRule(30.0, TIMEOUT_RE, "warning"))
    errors.report(2, "example.org", QTYPE.AAAA, REFUSED, now=0.0)
    errors.report(2, "example.org", QTYPE.A, TIMEOUT, now=0.0)
    errors.flush(30.0)
    failure, summary = (json.loads(text) for text in lines(out))
    assert {key: failure[key] for key in ("level", "msg", "rcode", "qname", "qtype")} == {
        "level": "error", "msg": f"2 example.org. AAAA: {REFUSED}", "rcode": 2, "qname": "example.org.", "qtype": "AAAA"}
    assert {key: summary[key] for key in ("level", "count", "pattern")} == {
        "level": "warning", "count": 1, "pattern": TIMEOUT_RE}


def test_matching_failures_are_counted_and_summarised_once_per_duration(out: io.StringIO) -> None:
    errors = consolidating(ConsolidateRule(30.0, TIMEOUT_RE, "warning"))
    for now in (100.0, 101.0, 129.0):
        errors.report(2, "example.org", QTYPE.A, TIMEOUT, now=now)
    errors.report(2, "example.org", QTYPE.A, REFUSED, now=110.0)  # does not match: its own line
    errors.flush(129.9)
    assert lines(out) == [f"[ERROR] plugin/errors: 2 example.org. A: {REFUSED}"]
    errors.flush(130.0)  # DURATION after the first one
    assert lines(out) == [f"[WARNING] plugin/errors: 3 errors like '{TIMEOUT_RE}' occurred in last 30s"]
    errors.flush(1000.0)  # nothing counted since
    errors.report(2, "example.org", QTYPE.A, TIMEOUT, now=1001.0)  # a new period starts with it
    errors.flush(1030.0)
    assert lines(out) == []
    errors.flush(1031.0)
    assert lines(out) == [f"[WARNING] plugin/errors: 1 errors like '{TIMEOUT_RE}' occurred in last 30s"]


def test_a_failure_after_the_period_ended_starts_the_next_one(out: io.StringIO) -> None:
    """Without a flush in between, the report itself closes the period that is over."""
    errors = consolidating(ConsolidateRule(300.0, TIMEOUT_RE, "info"))
    errors.report(2, "example.org", QTYPE.A, TIMEOUT, now=0.0)
    errors.report(2, "example.org", QTYPE.A, TIMEOUT, now=1.0)
    errors.report(2, "example.org", QTYPE.A, TIMEOUT, now=301.0)
    assert lines(out) == [f"[INFO] plugin/errors: 2 errors like '{TIMEOUT_RE}' occurred in last 5m0s"]
    errors.flush(600.0)
    assert lines(out) == []
    errors.flush(601.0)
    assert lines(out) == [f"[INFO] plugin/errors: 1 errors like '{TIMEOUT_RE}' occurred in last 5m0s"]


def test_the_level_defaults_to_error_and_debug_is_a_debug_line(out: io.StringIO) -> None:
    errors = consolidating(ConsolidateRule(1.0, "timeout"), ConsolidateRule(1.0, "refused", "debug"))
    errors.report(2, "example.org", QTYPE.A, TIMEOUT, now=0.0)
    errors.report(2, "example.org", QTYPE.A, REFUSED, now=0.0)
    errors.flush(1.0)
    assert lines(out) == ["[ERROR] plugin/errors: 1 errors like 'timeout' occurred in last 1s",
                          "[DEBUG] plugin/errors: 1 errors like 'refused' occurred in last 1s"]


def test_the_first_matching_rule_counts_the_failure(out: io.StringIO) -> None:
    errors = consolidating(ConsolidateRule(10.0, "udp"), ConsolidateRule(10.0, "timeout$"))
    errors.report(2, "example.org", QTYPE.A, TIMEOUT, now=0.0)
    errors.flush(10.0)
    assert lines(out) == ["[ERROR] plugin/errors: 1 errors like 'udp' occurred in last 10s"]


def test_show_first_logs_the_first_at_once_and_a_lone_one_is_not_summarised(out: io.StringIO) -> None:
    errors = consolidating(ConsolidateRule(30.0, TIMEOUT_RE, "warning", show_first=True))
    errors.report(2, "example.org", QTYPE.A, TIMEOUT, now=0.0)
    assert lines(out) == [f"[WARNING] plugin/errors: 2 example.org. A: {TIMEOUT}"]
    errors.flush(30.0)
    assert lines(out) == []
    for now in (40.0, 41.0, 42.0):
        errors.report(2, "example.org", QTYPE.AAAA, TIMEOUT, now=now)
    errors.flush(70.0)
    assert lines(out) == [f"[WARNING] plugin/errors: 2 example.org. AAAA: {TIMEOUT}",
                          f"[WARNING] plugin/errors: 3 errors like '{TIMEOUT_RE}' occurred in last 30s"]


def test_close_summarises_open_periods_and_stops_consolidating(out: io.StringIO) -> None:
    errors = consolidating(ConsolidateRule(60.0, TIMEOUT_RE, "warning"),
                           ConsolidateRule(60.0, "refused$", "warning", show_first=True))
    errors.report(2, "example.org", QTYPE.A, TIMEOUT, now=0.0)
    errors.report(2, "example.org", QTYPE.A, TIMEOUT, now=1.0)
    errors.report(2, "example.org", QTYPE.A, REFUSED, now=1.0)
    assert lines(out) == [f"[WARNING] plugin/errors: 2 example.org. A: {REFUSED}"]
    errors.close()
    errors.report(2, "example.org", QTYPE.A, TIMEOUT, now=2.0)
    assert lines(out) == [f"[WARNING] plugin/errors: 2 errors like '{TIMEOUT_RE}' occurred in last 1m0s",
                          f"[ERROR] plugin/errors: 2 example.org. A: {TIMEOUT}"]


def failure() -> ZeroDivisionError:
    try:
        1 / 0
    except ZeroDivisionError as error:
        return error
    raise AssertionError("unreachable")


def test_stacktrace_adds_the_traceback_of_an_internal_error(out: io.StringIO) -> None:
    consolidating(stacktrace=True).report(2, "example.org", QTYPE.A, "internal error", now=0.0, error=failure())
    text = lines(out)
    assert text[0] == "[ERROR] plugin/errors: 2 example.org. A: internal error"
    assert text[1] == "Traceback (most recent call last):" and text[-1] == "ZeroDivisionError: division by zero"


def test_without_stacktrace_an_internal_error_is_one_line(out: io.StringIO) -> None:
    consolidating().report(2, "example.org", QTYPE.A, "internal error", now=0.0, error=failure())
    assert lines(out) == ["[ERROR] plugin/errors: 2 example.org. A: internal error"]


@pytest.mark.parametrize(("seconds", "text"), [
    (0.0, "0s"), (30.0, "30s"), (300.0, "5m0s"), (90.0, "1m30s"), (3600.0, "1h0m0s"), (3661.5, "1h1m1.5s"),
    (1.5, "1.5s"), (0.25, "250ms"), (0.02, "20ms"), (1.5e-6, "1.5µs"), (5e-9, "5ns"), (86400.0, "24h0m0s"),
])
def test_durations_print_as_go_prints_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
