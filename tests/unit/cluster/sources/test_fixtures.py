"""The fixture source: manifests on disk -> registry updates, with a fake clock (no waiting).

Covers the shapes `kubectl` prints (multi-document YAML, `kind: List`, typed lists from
`kubectl get --raw`, JSON), reloads that wait for a change to settle, and bad input that is
reported while the last good data keeps being served.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from dns_server.cluster.records import KINDS
from dns_server.cluster.registry import Registry
from dns_server.cluster.sources.fixtures import FixtureSource
from dns_server.errors import ConfigError
from tests.clock import Clock

SETTLE = 0.5


def service(name: str, ip: str, namespace: str = "shop") -> str:
    return f"""\
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec: {{clusterIP: {ip}, ports: [{{name: http, port: 80, protocol: TCP}}]}}
"""


def source_for(directory: Path) -> tuple[FixtureSource, Registry, Clock]:
    clock = Clock()
    registry = Registry(required_kinds=KINDS)
    source = FixtureSource(directory, registry, settle=SETTLE, max_wait=1.5, clock=clock)
    source.load()
    return source, registry, clock


def cluster_ip(registry: Registry, name: str, namespace: str = "shop") -> str | None:
    entry = registry.snapshot.services.get((namespace, name))
    return entry.service.cluster_ips[0] if entry else None


def settle(source: FixtureSource, clock: Clock) -> bool:
    """Poll as the running source would until the change has settled; True if it was applied."""
    applied = source.poll()
    for _ in range(int(SETTLE / 0.25) + 2):
        clock.now += 0.25
        applied = source.poll() or applied
    return applied


def test_reads_every_manifest_shape(tmp_path: Path) -> None:
    (tmp_path / "multi.yaml").write_text(service("a", "10.0.0.1") + "---\n" + service("b", "10.0.0.2"))
    (tmp_path / "list.yml").write_text(
        "apiVersion: v1\nkind: List\nitems:\n- " + service("c", "10.0.0.3").replace("\n", "\n  "))
    (tmp_path / "raw.json").write_text(json.dumps({
        "kind": "ServiceList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"},
        "items": [{"metadata": {"name": "d", "namespace": "shop"}, "spec": {"clusterIP": "10.0.0.4"}}]}))
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "e.yaml").write_text(service("e", "10.0.0.5"))
    (tmp_path / "notes.txt").write_text(service("ignored", "10.0.0.9"))
    (tmp_path / ".hidden.yaml").write_text(service("hidden", "10.0.0.8"))
    _, registry, _ = source_for(tmp_path)
    assert {name: cluster_ip(registry, name) for name in "abcde"} == {
        "a": "10.0.0.1", "b": "10.0.0.2", "c": "10.0.0.3", "d": "10.0.0.4", "e": "10.0.0.5"}
    assert cluster_ip(registry, "ignored") is None and cluster_ip(registry, "hidden") is None
    assert registry.snapshot.synced
    assert "shop" in registry.snapshot.namespaces  # a namespace exists if an object lives in it


def test_an_unreadable_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing"):
        FixtureSource(tmp_path / "missing", Registry()).load()


def test_a_change_is_applied_once_it_has_settled(tmp_path: Path) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text(service("a", "10.0.0.1"))
    source, registry, clock = source_for(tmp_path)
    path.write_text(service("a", "10.0.0.2") + "---\n" + service("b", "10.0.0.3"))
    assert not source.poll()  # just seen: it may still be being written
    clock.now += SETTLE / 2
    assert not source.poll()
    clock.now += SETTLE
    assert source.poll()
    assert (cluster_ip(registry, "a"), cluster_ip(registry, "b")) == ("10.0.0.2", "10.0.0.3")
    clock.now += 1
    assert not source.poll()  # nothing changed since


def test_a_file_written_in_pieces_is_read_only_when_complete(tmp_path: Path) -> None:
    """A writer that truncates and writes in pieces: each piece restarts the settle window."""
    path = tmp_path / "svc.yaml"
    full = service("a", "10.0.0.1") + "---\n" + service("b", "10.0.0.2")
    path.write_text(full)
    source, registry, clock = source_for(tmp_path)
    new = full.replace("10.0.0.2", "10.0.0.7")
    with path.open("w") as handle:
        for start in range(0, len(new), 40):
            handle.write(new[start:start + 40])
            handle.flush()
            os.utime(path, ns=(0, int(clock.now * 1e9)))  # every write is a new mtime, as on a real disk
            assert not source.poll()
            assert (cluster_ip(registry, "a"), cluster_ip(registry, "b")) == ("10.0.0.1", "10.0.0.2")
            clock.now += 0.2
    assert settle(source, clock)
    assert (cluster_ip(registry, "a"), cluster_ip(registry, "b")) == ("10.0.0.1", "10.0.0.7")


def test_a_change_that_never_settles_is_read_after_max_wait(tmp_path: Path) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text(service("a", "10.0.0.1"))
    source, registry, clock = source_for(tmp_path)
    for step in range(8):
        path.write_text(service("a", f"10.0.1.{step}"))
        os.utime(path, ns=(0, step + 1))
        applied = source.poll()
        clock.now += 0.25
        if applied:
            break
    assert applied and clock.now - 1000.0 <= 2.0
    assert str(cluster_ip(registry, "a")).startswith("10.0.1.")


def test_a_broken_file_keeps_its_last_good_data(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text(service("a", "10.0.0.1"))
    (tmp_path / "other.yaml").write_text(service("b", "10.0.0.2"))
    source, registry, clock = source_for(tmp_path)
    path.write_text(service("a", "10.0.0.1") + "spec: [unclosed\n")
    with caplog.at_level(logging.ERROR):
        settle(source, clock)
    assert cluster_ip(registry, "a") == "10.0.0.1" and cluster_ip(registry, "b") == "10.0.0.2"
    assert str(path) in caplog.text and "cannot parse" in caplog.text and "keeping its 1 objects" in caplog.text
    path.write_text(service("a", "10.0.0.9"))
    settle(source, clock)
    assert cluster_ip(registry, "a") == "10.0.0.9"


def test_a_malformed_object_keeps_its_last_good_version(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text(service("a", "10.0.0.1") + "---\n" + service("b", "10.0.0.2"))
    source, registry, clock = source_for(tmp_path)
    path.write_text(service("a", "not-an-ip") + "---\n" + service("b", "10.0.0.3") + "---\n"
                    + service("c", "also-bad"))
    with caplog.at_level(logging.ERROR):
        settle(source, clock)
    assert cluster_ip(registry, "a") == "10.0.0.1"  # the bad edit is not applied; the old one stays
    assert cluster_ip(registry, "b") == "10.0.0.3"  # the good edit beside it is
    assert cluster_ip(registry, "c") is None
    assert f"{path}: Service shop/a: spec.clusterIPs[0] 'not-an-ip' is not an IP address" in caplog.text
    assert "Service shop/c" in caplog.text and "skipped" in caplog.text


def test_a_mixed_case_object_that_turns_malformed_keeps_its_last_good_version(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The record spells the name in lower case; the malformed object must still find it under that key."""
    path = tmp_path / "svc.yaml"
    path.write_text(service("Web", "10.0.0.1", namespace="Shop"))
    source, registry, clock = source_for(tmp_path)
    assert cluster_ip(registry, "web") == "10.0.0.1"
    path.write_text(service("Web", "not-an-ip", namespace="Shop"))
    with caplog.at_level(logging.ERROR):
        assert settle(source, clock)
    assert cluster_ip(registry, "web") == "10.0.0.1"
    assert f"{path}: Service Shop/Web: spec.clusterIPs[0] 'not-an-ip' is not an IP address; " \
           "keeping its last good version" in caplog.text


def test_a_bug_in_a_converter_is_not_taken_for_a_malformed_object(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Only MalformedObject means "bad input": any other error escapes the poll (whose caller logs it)."""
    path = tmp_path / "svc.yaml"
    path.write_text(service("a", "10.0.0.1"))
    source, registry, clock = source_for(tmp_path)

    def broken(obj: object) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr("dns_server.cluster.sources.fixtures.convert", broken)
    path.write_text(service("a", "10.0.0.2"))
    with pytest.raises(ValueError, match="a bug"):
        settle(source, clock)
    assert cluster_ip(registry, "a") == "10.0.0.1"


def test_odd_documents_are_reported_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "scalar.yaml").write_text("just some text\n")
    (tmp_path / "list.yaml").write_text("kind: List\nitems: [42, {kind: Service}]\n---\n" + service("a", "10.0.0.1"))
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "bad.json").write_text("{")
    with caplog.at_level(logging.ERROR):
        _, registry, _ = source_for(tmp_path)
    assert cluster_ip(registry, "a") == "10.0.0.1"
    assert "scalar.yaml: a document is a str" in caplog.text
    assert "an item is a int" in caplog.text and "metadata is missing" in caplog.text
    assert "bad.json: cannot parse" in caplog.text


def test_removed_files_take_their_objects_with_them(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(service("a", "10.0.0.1"))
    (tmp_path / "b.yaml").write_text(service("b", "10.0.0.2"))
    source, registry, clock = source_for(tmp_path)
    (tmp_path / "b.yaml").unlink()
    assert settle(source, clock)
    assert cluster_ip(registry, "a") == "10.0.0.1" and cluster_ip(registry, "b") is None


def test_an_object_moving_between_files_is_never_missing(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(service("a", "10.0.0.1"))
    (tmp_path / "b.yaml").write_text(service("b", "10.0.0.2"))
    source, registry, clock = source_for(tmp_path)
    (tmp_path / "a.yaml").write_text("")
    assert not source.poll()
    clock.now += 0.25
    (tmp_path / "b.yaml").write_text(service("b", "10.0.0.2") + "---\n" + service("a", "10.0.0.1"))
    for _ in range(8):
        source.poll()
        assert cluster_ip(registry, "a") == "10.0.0.1"
        clock.now += 0.25


def test_a_configmap_style_symlink_swap_applies_whole(tmp_path: Path) -> None:
    """Kubernetes ConfigMap volumes: visible files link through `..data` into a timestamped directory."""
    first = tmp_path / "..2026_11_24_01_00_00.1"
    first.mkdir()
    (first / "a.yaml").write_text(service("a", "10.0.0.1"))
    (first / "b.yaml").write_text(service("b", "10.0.0.2"))
    (tmp_path / "..data").symlink_to(first.name)
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).symlink_to(f"..data/{name}")
    source, registry, clock = source_for(tmp_path)
    assert (cluster_ip(registry, "a"), cluster_ip(registry, "b")) == ("10.0.0.1", "10.0.0.2")
    second = tmp_path / "..2026_11_24_01_05_00.2"
    second.mkdir()
    (second / "a.yaml").write_text(service("a", "10.0.1.1"))
    (second / "b.yaml").write_text(service("b", "10.0.1.2"))
    (tmp_path / "..data_tmp").symlink_to(second.name)
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    assert settle(source, clock)
    assert (cluster_ip(registry, "a"), cluster_ip(registry, "b")) == ("10.0.1.1", "10.0.1.2")
    assert registry.counts()["Service"] == 2  # hidden dirs are not read twice


def test_a_symlink_loop_is_walked_once(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(service("a", "10.0.0.1"))
    (tmp_path / "loop").symlink_to(tmp_path)
    _, registry, _ = source_for(tmp_path)
    assert cluster_ip(registry, "a") == "10.0.0.1"
