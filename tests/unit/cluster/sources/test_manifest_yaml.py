"""Reading YAML manifests with yaml-rs (`sources.fixtures.load_yaml`): documents, lists, bad bytes.

The parser changed from PyYAML to yaml-rs for start-up time (see bench/); these tests pin down
what must not change with it: the documents a stream holds, what kubectl-shaped files read as
(compared with PyYAML on the example cluster), and that bytes a YAML file may not hold are an
error rather than a silently shortened file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from dns_server.cluster.sources.fixtures import FixtureError, load_yaml, parse_manifest

ZONES = Path(__file__).resolve().parents[4] / "zones"


@pytest.mark.parametrize(("text", "documents"), [
    ("", []),
    ("# only a comment\n", []),
    ("kind: Service\n", [{"kind": "Service"}]),
    ("kind: Service", [{"kind": "Service"}]),  # no newline at the end
    ("a: 1\n---\nb: 2\n", [{"a": 1}, {"b": 2}]),
    ("---\na: 1\n...\n", [{"a": 1}]),
    ("a: 1\n---\n", [{"a": 1}, None]),
    ("- a\n- b\n", [["a", "b"]]),  # one document that is a list, not a stream of two
    ("- a\n---\n- b\n", [["a"], ["b"]]),
    ("a: 1\na: 2\n", [{"a": 2}]),  # a repeated key: the last one wins, as with PyYAML
    ("t: 2024-05-02T09:14:07Z\n", [{"t": "2024-05-02T09:14:07Z"}]),  # timestamps stay text, as in JSON
    ("a: |+\n  x\n\n", [{"a": "x\n\n"}]),  # a kept trailing newline is not touched
])
def test_documents_of_a_stream(text: str, documents: list[Any]) -> None:
    assert load_yaml(text.encode()) == documents


def test_utf16_with_a_byte_order_mark() -> None:
    assert load_yaml("kind: Namespace\n".encode("utf-16")) == [{"kind": "Namespace"}]


@pytest.mark.parametrize(("raw", "reason"), [
    (b"kind: Service\nmetadata:\n  name: a\n\x00\x00\x00", r"#x0000 on line 4"),  # a file still being written
    (b"kind: Service\nmetadata: {name: \x07}\n", r"#x0007 on line 2"),
    (b"a: [1,\n", r"line"),
    (b"a: \xff\n", r"utf-8"),
])
def test_bytes_yaml_does_not_allow_are_an_error(raw: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        load_yaml(raw)


def test_a_file_padded_with_nuls_is_not_read_as_its_prefix(tmp_path: Path) -> None:
    path = tmp_path / "svc.yaml"
    path.write_bytes(b"apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: shop}\n" + bytes(64))
    with pytest.raises(FixtureError, match="cannot parse: unacceptable character #x0000"):
        parse_manifest(path)


def test_a_top_level_list_is_not_taken_for_objects(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- {kind: Namespace, metadata: {name: a}}\n")
    with pytest.raises(FixtureError, match="a document is a list"):
        parse_manifest(path)


@pytest.mark.parametrize("path", sorted(ZONES.glob("*.yaml")), ids=lambda p: p.name)
def test_the_example_cluster_reads_as_pyyaml_reads_it(path: Path) -> None:
    assert load_yaml(path.read_bytes()) == list(yaml.safe_load_all(path.read_bytes()))
