"""The server's own lines: CoreDNS's text layout and the JSON objects, with structured fields."""

from __future__ import annotations

import io
import json
import logging
import sys
from datetime import datetime, timezone
from typing import Iterator

import pytest

from dns_server.observability.logs import Output, log_event, plugin_of, setup_logging


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    """What setup_logging sends to its output; the root logger is restored afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def raised() -> BaseException:
    try:
        raise RuntimeError("boom")
    except RuntimeError as error:
        return error


@pytest.mark.parametrize(("logger", "plugin"), [
    ("dns_server.plugins.forward.forwarder", "forward"), ("dns_server.cluster.sources", "kubernetes"), ("dns_server.plugins.forward.outbound", "forward"), ("dns_server.cluster.sources.kube", "kubernetes"),
    ("dns_server.cluster.sources.fixtures", "kubernetes"), ("dns_server.plugins.log", "log"), ("dns_server.plugins.errors", "errors"),
    ("dns_server.app", None), ("dns_server", None), ("dns_server.forwarding", None), ("urllib3", None), ("", None),
])
def test_plugin_of(logger: str, plugin: str | None) -> None:
    assert plugin_of(logger) == plugin


def test_text_lines_are_coredns_lines(out: io.StringIO) -> None:
    setup_logging("debug", "text", Output(out))
    logging.getLogger("dns_server.plugins.forward.forwarder").warning("upstream %s failed %d times", "192.0.2.1:53", 2)
    logging.getLogger("dns_server.cluster.sources.kube").info("services: 10 objects")
    logging.getLogger("dns_server.app").info("listening on 127.0.0.1:53")
    logging.getLogger("dns_server.app").debug("100% ready")
    logging.getLogger("dns_server.app").critical("cannot bind")
    logging.getLogger("dns_server.app").log(logging.INFO + 5, "between info and warning")
    assert out.getvalue().splitlines() == [
        "[WARNING] plugin/forward: upstream 192.0.2.1:53 failed 2 times",
        "[INFO] plugin/kubernetes: services: 10 objects",
        "[INFO] listening on 127.0.0.1:53",
        "[DEBUG] 100% ready",
        "[FATAL] cannot bind",
        "[INFO] between info and warning",
    ]


def test_a_text_traceback_follows_its_line(out: io.StringIO) -> None:
    setup_logging("info", "text", Output(out))
    logging.getLogger("dns_server.serving.router").error("internal error", exc_info=raised())
    text = out.getvalue().splitlines()
    assert text[:2] == ["[ERROR] internal error", "Traceback (most recent call last):"]
    assert text[-1] == "RuntimeError: boom"


def test_the_level_filters(out: io.StringIO) -> None:
    setup_logging("warning", "text", Output(out))
    logging.getLogger("dns_server.app").info("hidden")
    logging.getLogger("dns_server.app").warning("shown")
    assert out.getvalue() == "[WARNING] shown\n"


def test_json_lines_have_time_level_logger_msg_and_the_extra_fields(out: io.StringIO) -> None:
    setup_logging("info", "json", Output(out))
    before = datetime.now(timezone.utc).replace(microsecond=0)
    logging.getLogger("dns_server.plugins.forward.forwarder").warning("upstream %s is down", "192.0.2.1:53",
                                                    extra={"upstream": "192.0.2.1:53", "fails": 2, "path": sys})
    entry = json.loads(out.getvalue())
    assert entry.pop("time").endswith("Z")
    assert entry == {"level": "warning", "logger": "dns_server.plugins.forward.forwarder", "msg": "upstream 192.0.2.1:53 is down",
                     "upstream": "192.0.2.1:53", "fails": 2, "path": str(sys)}
    stamp = json.loads(out.getvalue())["time"]
    assert datetime.fromisoformat(stamp.replace("Z", "+00:00")) >= before
    assert len(stamp) == len("2026-01-02T03:04:05.678Z")


def test_json_keeps_a_traceback_in_one_line(out: io.StringIO) -> None:
    setup_logging("info", "json", Output(out))
    logging.getLogger("dns_server.app").critical("crashed", exc_info=raised())
    [entry] = [json.loads(text) for text in out.getvalue().splitlines()]
    assert entry["level"] == "fatal" and entry["exception"].endswith("RuntimeError: boom")


def test_events_read_well_as_text_and_carry_their_fields_as_json(out: io.StringIO) -> None:
    setup_logging("info", "text", Output(out))
    log = logging.getLogger("dns_server.cluster.sources.kube")
    log_event(log, "sync", "services: 10000 objects in 1.20 s", kind="services", objects=10000, seconds=1.2)
    assert out.getvalue() == "[INFO] plugin/kubernetes: services: 10000 objects in 1.20 s\n"

    json_out = io.StringIO()
    setup_logging("info", "json", Output(json_out))
    log_event(log, "sync", "services: 10000 objects in 1.20 s", kind="services", objects=10000, seconds=1.2)
    log_event(logging.getLogger("dns_server.app"), "reload", "reload failed: bad Corefile", level=logging.ERROR,
              corefile="/etc/coredns/Corefile")
    sync, reload = (json.loads(text) for text in json_out.getvalue().splitlines())
    assert {key: sync[key] for key in ("level", "msg", "event", "kind", "objects", "seconds")} == {
        "level": "info", "msg": "services: 10000 objects in 1.20 s", "event": "sync", "kind": "services",
        "objects": 10000, "seconds": 1.2}
    assert (reload["level"], reload["event"], reload["corefile"]) == ("error", "reload", "/etc/coredns/Corefile")


def test_setup_again_replaces_the_handler(out: io.StringIO) -> None:
    first = io.StringIO()
    setup_logging("info", "text", Output(first))
    setup_logging("info", "json", Output(out))
    logging.getLogger("dns_server.app").info("once")
    assert first.getvalue() == "" and json.loads(out.getvalue())["msg"] == "once"


@pytest.mark.parametrize(("level", "fmt", "message"), [
    ("verbose", "text", "log level 'verbose': use one of debug, info, warning, error"),
    ("info", "xml", "log format 'xml': use one of text, json"),
])
def test_bad_settings_are_a_clear_error(level: str, fmt: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        setup_logging(level, fmt, Output(io.StringIO()))
    assert str(caught.value) == message


def test_output_writes_whole_lines_and_flushes_each_write() -> None:
    class Stream(io.StringIO):
        flushed: list[str] = []

        def flush(self) -> None:
            self.flushed.append(self.getvalue())

    stream = Stream()
    output = Output(stream)
    output.write("a\nb\n")
    output.write("c\n")
    assert stream.flushed == ["a\nb\n", "a\nb\nc\n"]


def test_output_without_a_stream_writes_to_the_current_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    Output().write("to stdout\n")
    assert capsys.readouterr() == ("to stdout\n", "")
