"""sources/pages.py: list pages decoded into only what DNS reads, whole or as their bytes arrive.

The pages are JSON as the API server writes them (items without kind or apiVersion, ObjectMeta
first), fed to `ListDecoder` in pieces of many sizes; what it yields must be what `decode_list`
makes of the whole page, item for item, whatever the pieces.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from hypothesis import example, given

from dns_server.cluster.records import ENDPOINT_SLICE, NAMESPACE, POD, SERVICE, MalformedObject, convert
from dns_server.cluster.sources import pages
from dns_server.cluster.sources.pages import DecodedPod, DecodedSlice, ListDecoder, as_object, decode_list, record_of
from dns_server.errors import MalformedInput
from tests.unit.cluster.test_records import LIST_ITEMS, shapes

BATCH = 256  # bytes: small enough that every page below is cut into many batches


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pages, "BATCH_BYTES", BATCH)


def item_of(kind: str, number: int, **extra: Any) -> dict[str, Any]:
    """The kind's example object as a list item (ObjectMeta first, as Go encodes it), renamed, with a few
    fields DNS does not read."""
    example = json.loads(json.dumps(LIST_ITEMS[kind]))
    item = {"metadata": example.pop("metadata")} | {k: v for k, v in example.items() if k not in ("kind", "apiVersion")}
    item["metadata"] |= {"name": f"{item['metadata']['name']}-{number}", "uid": f"uid-{number}",
                         "annotations": {"note": f"café ☕ 日本 \"quoted\" back\\slash \n {{\"metadata\": {number}}}"},
                         "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:metadata": {}}}]}
    return item | extra


def page_of(kind: str, items: list[dict[str, Any]], compact: bool = True, **meta: str) -> bytes:
    """A list page as kube-apiserver writes it (Go's encoding: no spaces), or as json.dumps does."""
    body = {"kind": f"{kind}List", "apiVersion": "v1", "metadata": {"resourceVersion": "42", **meta}, "items": items}
    return json.dumps(body, separators=(",", ":") if compact else None, ensure_ascii=not compact).encode()


def stream(kind: str, data: bytes, piece: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str, str]:
    """(items yielded while feeding, items at close, resourceVersion, continue) of `data` fed `piece` bytes at a time."""
    decoder = ListDecoder(kind)
    fed = [item for start in range(0, len(data), piece) for item in decoder.feed(data[start:start + piece])]
    rest, version, token = decoder.close()
    return fed, rest, version, token


@pytest.mark.parametrize("compact", [True, False], ids=["go", "python"])
@pytest.mark.parametrize("piece", [1, 7, 100, 4096, 1 << 20])
@pytest.mark.parametrize("kind", sorted(LIST_ITEMS))
def test_a_page_fed_in_pieces_gives_what_the_whole_page_gives(kind: str, piece: int, compact: bool) -> None:
    data = page_of(kind, [item_of(kind, n) for n in range(40)], compact, **{"continue": "next"})
    fed, rest, version, token = stream(kind, data, piece)
    whole, whole_version, whole_token = decode_list(kind, data)
    assert fed + rest == whole
    assert (version, token) == (whole_version, whole_token) == ("42", "next")
    assert [record_of(kind, i) for i in fed + rest] == [record_of(kind, i) for i in whole]
    if piece < len(data):
        assert len(fed) > len(rest)  # decoded as it arrived, not at the end


def test_only_the_bytes_not_yet_decoded_are_held() -> None:
    data = page_of(POD, [item_of(POD, n) for n in range(2000)])
    decoder = ListDecoder(POD)
    held = 0
    for start in range(0, len(data), 100):
        decoder.feed(data[start:start + 100])
        held = max(held, len(decoder._pending))
    assert len(data) > 100 * BATCH and held < 2 * BATCH + 2 * len(json.dumps(item_of(POD, 0)))
    assert decoder.decoded + len(decoder.close()[0]) == 2000


def test_an_empty_page_and_a_page_whose_metadata_comes_last() -> None:
    assert stream(SERVICE, page_of(SERVICE, []), 3) == ([], [], "42", "")
    items = [item_of(SERVICE, n) for n in range(30)]
    data = json.dumps({"items": items, "metadata": {"resourceVersion": "9", "continue": "c"}},
                      separators=(",", ":")).encode()
    fed, rest, version, token = stream(SERVICE, data, 50)
    assert fed + rest == decode_list(SERVICE, data)[0] and fed and (version, token) == ("9", "c")


def test_an_item_of_an_unexpected_shape_costs_only_itself() -> None:
    items = [item_of(POD, n) for n in range(30)]
    items[17]["metadata"]["labels"] = "not a map"  # the structs take it (Any); a wrong top-level shape does not:
    items[21] = {"metadata": {"name": "odd", "namespace": "ns", "creationTimestamp": 5}, "status": []}
    fed, rest, _, _ = stream(POD, page_of(POD, items), 64)
    decoded = fed + rest
    assert len(decoded) == 30 and decoded[21]["status"] == []  # read whole: its converter rejects it
    assert as_object(POD, decoded[20])["metadata"]["name"] == "web-0-20"


def test_a_page_that_cannot_be_cut_between_items_is_decoded_whole_at_its_end() -> None:
    """`,{"metadata":` inside an item (an array of objects whose first key is metadata) is no item's start."""
    items = [item_of(POD, n, spec={"extra": [{"a": 1}, {"metadata": {"name": "inner"}}]}) for n in range(30)]
    data = page_of(POD, items)
    fed, rest, _, _ = stream(POD, data, 64)
    assert fed + rest == decode_list(POD, data)[0] and rest  # cutting was given up at an inner candidate
    other = json.dumps({"items": [{"spec": {}, **item} for item in items]}).encode()  # no item starts with metadata
    assert stream(POD, other, 64)[:2] == ([], decode_list(POD, other)[0])


@pytest.mark.parametrize("cut", [1, 40, 0.3, 0.6, 0.999])
def test_a_page_that_breaks_off_is_an_error_naming_how_far_it_got(cut: float) -> None:
    data = page_of(POD, [item_of(POD, n) for n in range(40)])
    decoder = ListDecoder(POD)
    fed = decoder.feed(data[:int(cut * len(data)) if cut < 1 else int(cut)])
    with pytest.raises(MalformedInput, match="the list page is not JSON") as error:
        decoder.close()
    if fed:
        assert f"(after {len(fed)} items, the last shop/web-0-{len(fed) - 1})" in str(error.value)


@pytest.mark.parametrize("garbage", [b"}", b"\x00", b"][", b"\\"])
def test_garbage_inside_a_page_is_an_error_not_a_crash(garbage: bytes) -> None:
    data = page_of(SERVICE, [item_of(SERVICE, n) for n in range(40)])
    at = data.index(b'"Web-25"')
    broken = data[:at] + garbage + data[at:]
    with pytest.raises(MalformedInput, match=r"not JSON|not an object"):
        stream(SERVICE, broken, 100)


@pytest.mark.parametrize("kind", sorted(LIST_ITEMS))
def test_a_list_page_gives_its_items_version_and_continue_token(kind: str) -> None:
    item = {k: v for k, v in LIST_ITEMS[kind].items() if k not in ("kind", "apiVersion")}  # list items carry none
    page = {"kind": f"{kind}List", "metadata": {"resourceVersion": "42", "continue": "next-page"},
            "items": [item, item]}
    items, version, token = decode_list(kind, json.dumps(page).encode())
    assert (len(items), version, token) == (2, "42", "next-page")
    assert record_of(kind, items[0]) == convert(LIST_ITEMS[kind])  # nothing DNS reads was lost


def test_a_list_page_keeps_only_what_dns_reads() -> None:
    page = json.dumps({"metadata": {"resourceVersion": "42", "continue": "abc"}, "items": [
        {"metadata": {"name": "p", "namespace": "ns", "managedFields": [{"manager": "kubelet"}],
                      "creationTimestamp": "2024-05-01T10:00:00Z"},
         "spec": {"containers": [{"name": "app"}], "hostNetwork": True},
         "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}], "conditions": []}}]}).encode()
    items, version, token = decode_list(POD, page)
    assert [as_object(POD, item) for item in items] == [
        {"kind": POD, "metadata": {"name": "p", "namespace": "ns", "creationTimestamp": "2024-05-01T10:00:00Z"},
         "spec": {"hostNetwork": True}, "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}]}}]
    assert (version, token) == ("42", "abc")


def test_a_slice_item_keeps_the_conditions_explain_shows() -> None:
    """The server reads only `ready`; `dns-server explain` lists the same pages and shows serving and terminating."""
    endpoint = {"addresses": ["10.1.0.6"], "conditions": {"ready": False, "serving": False, "terminating": True}}
    page = json.dumps({"items": [{"metadata": {"name": "web-abcde", "namespace": "app"}, "endpoints": [endpoint]}]})
    [item], _, _ = decode_list(ENDPOINT_SLICE, page.encode())
    assert as_object(ENDPOINT_SLICE, item)["endpoints"] == [endpoint]


@pytest.mark.parametrize("page", [{"items": None}, {"metadata": {}}, {}])
def test_a_page_without_items_or_metadata_is_empty_and_the_last(page: dict[str, Any]) -> None:
    assert decode_list(SERVICE, json.dumps(page).encode()) == ([], "", "")


def test_a_page_of_an_unexpected_shape_is_read_whole() -> None:
    odd = {"metadata": "not an object", "spec": {}}  # the converter reports it; the page must still be read
    page = {"metadata": {"resourceVersion": "7", "continue": "c"}, "items": [odd]}
    assert decode_list(SERVICE, json.dumps(page).encode()) == ([odd], "7", "c")
    assert decode_list(SERVICE, json.dumps({"items": [odd]}).encode()) == ([odd], "", "")
    assert decode_list(ENDPOINT_SLICE, json.dumps({"items": [{"metadata": 5}]}).encode()) == ([{"metadata": 5}], "", "")


@pytest.mark.parametrize("data, reason", [
    (b"{not json", "the list page is not JSON"),
    (b"[1, 2]", "not an object with metadata and a list of items"),
    (b'{"items": {"a": 1}}', "not an object with metadata and a list of items"),
    (b'{"metadata": ["x"], "items": [{"metadata": 5}]}', "not an object with metadata and a list of items"),
    (b'{"items": [{"metadata": 5}], "x": [1,}', "the list page is not JSON"),
])
def test_a_page_that_is_not_a_list_page_says_why(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedInput, match=reason):
        decode_list(NAMESPACE, data)
    with pytest.raises(MalformedInput, match=reason):
        stream(NAMESPACE, data, 3)


def outcome(kind: str, item: Any) -> Any:
    """What a list item becomes: its record, or the reason it is malformed."""
    try:
        return record_of(kind, item)
    except MalformedObject as bad:
        return str(bad)


POD_ITEM = {"metadata": {"name": "Web-0", "namespace": "Shop", "creationTimestamp": "2024-05-01T10:00:00Z",
                         "deletionTimestamp": "2024-05-02T00:00:00Z"},
            "spec": {"hostNetwork": True},
            "status": {"phase": "Running", "podIP": "10.0.0.2", "podIPs": [{"ip": "10.0.0.1"}]}}


@given(shapes(POD_ITEM))
@example(POD_ITEM)
@example({**POD_ITEM, "status": {"phase": "Failed", "podIP": "10.0.0.2"}})
def test_a_pod_decoded_as_its_struct_gives_what_its_dict_gives(fields: Any) -> None:
    """A page's pods are made into records from their structs, without a dict: the same record, or the same
    reason it is malformed, as `records.pod_from_api` gives for the object."""
    [item] = decode_list(POD, json.dumps({"items": [fields]}).encode())[0]
    assert outcome(POD, item) == outcome(POD, json.loads(json.dumps(fields)))


SLICE_ITEM = {"metadata": {"name": "Web-ABC", "namespace": "Shop",
                           "labels": {"kubernetes.io/service-name": "Web", "app": "web"}},
              "addressType": "IPv4",
              "endpoints": [{"addresses": ["10.0.0.1", "10.0.0.2"], "conditions": {"ready": False},
                             "hostname": "Web-0", "targetRef": {"kind": "Pod", "name": "Web-0"}},
                            {"addresses": ["10.0.0.3"], "targetRef": {"kind": "Node", "name": "n"}}],
              "ports": [{"name": "HTTP", "protocol": "tcp", "port": 80}, {"name": "all"}]}
IMPORT_LABELS = {"multicluster.kubernetes.io/service-name": "Web", "multicluster.kubernetes.io/source-cluster": "C1"}


@given(shapes(SLICE_ITEM))
@example(SLICE_ITEM)
@example({**SLICE_ITEM, "addressType": "FQDN"})
@example({**SLICE_ITEM, "metadata": {"name": "web-abc", "labels": IMPORT_LABELS}})
@example({**SLICE_ITEM, "endpoints": [{"addresses": ["10.0.0.1"], "targetRef": {"kind": "Pod", "name": None}}]})
def test_a_slice_decoded_as_its_struct_gives_what_its_dict_gives(fields: Any) -> None:
    """A page's EndpointSlices, as its pods, are made into records from their structs (a local service's or
    a ServiceImport's): the same record, or the same reason, as `records.endpoint_slice_from_api` gives."""
    [item] = decode_list(ENDPOINT_SLICE, json.dumps({"items": [fields]}).encode())[0]
    expected = outcome(ENDPOINT_SLICE, json.loads(json.dumps(fields)))
    assert outcome(ENDPOINT_SLICE, item) == outcome(ENDPOINT_SLICE, as_object(ENDPOINT_SLICE, item)) == expected


@pytest.mark.parametrize("kind, decoded", [(POD, DecodedPod), (ENDPOINT_SLICE, DecodedSlice)])
def test_pods_and_slices_of_the_expected_shape_come_as_their_structs(kind: str, decoded: type) -> None:
    assert all(isinstance(item, decoded) for item in decode_list(kind, page_of(kind, [item_of(kind, 1)]))[0])
