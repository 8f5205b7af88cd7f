"""Watch events -> registry updates, and the recorded-stream replay (`--watch-file`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from dns_server.cluster.records import SERVICE, MalformedObject, Service
from dns_server.cluster.sources.events import BadEvent, parse_event, update_for
from dns_server.cluster.sources.replay import read_watch_file
from dns_server.cluster.updates import Put, Remove
from dns_server.errors import ConfigError

SVC = {"kind": "Service", "apiVersion": "v1", "metadata": {"name": "Web", "namespace": "Shop", "resourceVersion": "7"},
       "spec": {"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"], "ports": [{"port": 80}]}}


@pytest.mark.parametrize("line, reason", [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"type": "SOMETHING", "object": {}}', "unknown event type 'SOMETHING'"),
    (b'{"type": "ADDED"}', "the event has no object"),
])
def test_unreadable_events_say_why(line: bytes, reason: str) -> None:
    with pytest.raises(BadEvent, match=reason):
        parse_event(line)


def test_events_become_updates() -> None:
    put = update_for("ADDED", dict(SVC))
    assert isinstance(put, Put) and isinstance(put.record, Service)
    assert put.record.key == (SERVICE, "shop", "web") and put.record.cluster_ips == ("10.96.0.1",)
    assert update_for("MODIFIED", dict(SVC)) == put
    assert update_for("DELETED", dict(SVC)) == Remove((SERVICE, "shop", "web"))
    broken = {**SVC, "spec": {"clusterIP": "10.96.0.300"}}
    assert update_for("DELETED", broken) == Remove((SERVICE, "shop", "web"))  # a deletion needs only the name
    with pytest.raises(MalformedObject, match="10.96.0.300"):
        update_for("ADDED", broken)
    with pytest.raises(MalformedObject, match="metadata.name is missing"):
        update_for("DELETED", {"kind": "Service", "metadata": {"namespace": "shop"}})
    assert update_for("ADDED", {"kind": "ConfigMap", "metadata": {"name": "x"}}) is None


def test_replay_reports_bad_lines_by_number_and_keeps_the_rest(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    stream = tmp_path / "events.jsonl"
    stream.write_text("\n".join([
        json.dumps({"type": "ADDED", "object": SVC}),
        "",
        json.dumps({"type": "BOOKMARK", "object": {"kind": "Service", "metadata": {"resourceVersion": "9"}}}),
        "garbage",
        json.dumps({"type": "ADDED", "object": {"metadata": {"name": "nokind"}}}),
        json.dumps({"type": "ERROR", "object": {"kind": "Status", "code": 410}}),
        json.dumps({"type": "DELETED", "object": SVC}),
    ]) + "\n")
    with caplog.at_level(logging.INFO):
        updates = read_watch_file(stream)
    assert [type(u).__name__ for u in updates] == ["Put", "Remove"]
    assert f"{stream}:4: not JSON" in caplog.text
    assert f"{stream}:5: the object has no kind" in caplog.text
    assert f"{stream}:1:" not in caplog.text and f"{stream}:3:" not in caplog.text
    assert "2 events to replay, 2 bad lines skipped" in caplog.text


def test_an_unreadable_watch_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--watch-file"):
        read_watch_file(tmp_path / "missing.jsonl")
