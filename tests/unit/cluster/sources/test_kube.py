"""The API source's pure parts: backoff, what is watched with which selectors, the client's configuration."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from dns_server.cluster.records import (
    ENDPOINT_SLICE,
    MULTICLUSTER_SLICE,
    NAMESPACE,
    POD,
    SERVICE,
    SERVICE_IMPORT,
)
from dns_server.cluster.registry import Registry
from dns_server.cluster.scope import FixedNamespaces, SelectedNamespaces
from dns_server.cluster.sources.kube import (
    RUNNING_PODS_FIELD_SELECTOR,
    Backoff,
    KubeSource,
    Resource,
    WatchFailed,
    api_client,
    resources_for,
)
from dns_server.cluster.sources.settings import SourceSettings
from dns_server.errors import ConfigError
from dns_server.plugins.kubernetes.setup import KubernetesSettings, PodMode


def source(**options: object) -> SourceSettings:
    """The source part of a `kubernetes cluster.local { ... }` block with these options."""
    return KubernetesSettings(zones=("cluster.local",), **options).source  # type: ignore[arg-type]


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    backoff = Backoff(initial=0.8, cap=30.0)
    rng = random.Random(7)
    for failures, base in [(1, 0.8), (2, 1.6), (3, 3.2), (5, 12.8), (6, 25.6), (7, 30.0), (100, 30.0)]:
        delays = [backoff.delay(failures, rng) for _ in range(200)]
        assert all(base / 2 <= d <= base for d in delays), failures
        assert max(delays) - min(delays) > base / 4  # jittered: restarts are not in lockstep


@pytest.mark.parametrize("options, expected", [
    ({}, [Resource(NAMESPACE), Resource(SERVICE), Resource(ENDPOINT_SLICE)]),
    ({"pods": PodMode.INSECURE}, [Resource(NAMESPACE), Resource(SERVICE), Resource(ENDPOINT_SLICE)]),
    ({"pods": PodMode.VERIFIED}, [Resource(NAMESPACE), Resource(SERVICE), Resource(ENDPOINT_SLICE),
                                  Resource(POD, field_selector=RUNNING_PODS_FIELD_SELECTOR)]),
    ({"noendpoints": True}, [Resource(NAMESPACE), Resource(SERVICE)]),
    ({"labels": "app=web", "namespace_labels": "team", "pods": PodMode.VERIFIED},
     [Resource(NAMESPACE, "team"), Resource(SERVICE, "app=web"), Resource(ENDPOINT_SLICE, "app=web"),
      Resource(POD, "app=web", RUNNING_PODS_FIELD_SELECTOR)]),
    ({"multicluster": ("cluster.local",)},
     [Resource(NAMESPACE), Resource(SERVICE), Resource(ENDPOINT_SLICE, "!multicluster.kubernetes.io/service-name"),
      Resource(SERVICE_IMPORT), Resource(MULTICLUSTER_SLICE, "multicluster.kubernetes.io/service-name")]),
    ({"multicluster": ("cluster.local",), "labels": "app=web"},
     [Resource(NAMESPACE), Resource(SERVICE, "app=web"),
      Resource(ENDPOINT_SLICE, "app=web,!multicluster.kubernetes.io/service-name"), Resource(SERVICE_IMPORT),
      Resource(MULTICLUSTER_SLICE, "app=web,multicluster.kubernetes.io/service-name")]),
])
def test_resources_and_their_server_side_selectors(options: dict[str, object], expected: list[Resource]) -> None:
    assert list(resources_for(source(**options))) == expected


def test_required_kinds_and_scope_follow_the_settings() -> None:
    assert source().required_kinds == {NAMESPACE, SERVICE, ENDPOINT_SLICE}
    assert source(pods=PodMode.VERIFIED).required_kinds == {NAMESPACE, SERVICE, ENDPOINT_SLICE, POD}
    assert source(noendpoints=True).required_kinds == {NAMESPACE, SERVICE}
    assert source(multicluster=("cluster.local",)).required_kinds == {
        NAMESPACE, SERVICE, ENDPOINT_SLICE, SERVICE_IMPORT, MULTICLUSTER_SLICE}
    assert source().scope() is None
    assert isinstance(source(namespaces=("a", "b")).scope(), FixedNamespaces)
    assert isinstance(source(namespace_labels="team=a").scope(), SelectedNamespaces)


def test_in_a_pod_the_service_account_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No --kubeconfig: the API address from the environment, the token and CA from the pod's files."""
    from kubernetes.config import incluster_config

    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("pod-token")
    ca.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    client = api_client(source())
    configuration = client.configuration
    assert configuration.host == "https://10.96.0.1:443"
    assert configuration.ssl_ca_cert == str(ca)
    assert configuration.get_api_key_with_prefix("BearerToken") == "bearer pod-token"
    assert configuration.keep_alive and configuration.retries is False
    client.close()


def test_outside_a_pod_without_a_kubeconfig_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="in-cluster service account"):
        api_client(source())


def test_an_endpoint_with_tls_files_is_used_as_given(tmp_path: Path) -> None:
    """`endpoint URL` and `tls CERT KEY CACERT`, as CoreDNS reads them (no kubeconfig, no service account)."""
    cert, key, ca = (str(tmp_path / name) for name in ("client.crt", "client.key", "ca.crt"))
    client = api_client(source(endpoint="https://203.0.113.1:6443", tls=(cert, key, ca)))
    configuration = client.configuration
    assert configuration.host == "https://203.0.113.1:6443"
    assert (configuration.cert_file, configuration.key_file, configuration.ssl_ca_cert) == (cert, key, ca)
    client.close()


def test_a_missing_kubeconfig_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        api_client(source(kubeconfig=tmp_path / "nope"))


class ScriptedStream:
    """A watch response that hands out the given byte chunks, then ends."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    def read1(self, size: int) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


def offline_source(tmp_path: Path, registry: Registry, kind: str) -> KubeSource:
    """An API source of one resource whose list functions the test replaces (its API is never reached)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text('{"apiVersion": "v1", "kind": "Config", "current-context": "c", '
                          '"clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}], '
                          '"users": [{"name": "u", "user": {"token": "t"}}], '
                          '"contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}')
    return KubeSource(api_client(source(kubeconfig=kubeconfig)), registry, [Resource(kind)])


def test_events_before_a_bad_line_are_applied_and_the_stream_is_resumed_after_them(tmp_path: Path) -> None:
    registry = Registry(required_kinds=set())
    kube = offline_source(tmp_path, registry, SERVICE)
    added = (b'{"type": "ADDED", "object": {"kind": "Service", "metadata": {"name": "web", "namespace": "shop", '
             b'"resourceVersion": "42"}, "spec": {"clusterIP": "10.96.0.7", "clusterIPs": ["10.96.0.7"]}}}\n')
    kube._list_functions[SERVICE] = lambda **params: ScriptedStream(added[:30], added[30:] + b"{garbage\n")
    status = kube.status.resources[SERVICE]
    status.resource_version = "41"
    with pytest.raises(WatchFailed, match="unreadable watch event"):
        kube._watch(Resource(SERVICE), status)
    assert status.resource_version == "42"  # the resume starts after the event that was read ...
    kube._applier.close()
    kube._applier.run()
    assert ("shop", "web") in registry.snapshot.services  # ... so that event must have been applied
    kube._api.close()


def test_a_watch_of_local_slices_keeps_none_labelled_for_a_service_import(tmp_path: Path) -> None:
    """Without `multicluster` the local watch sees every slice: one labelled for an import is not kept."""
    registry = Registry(required_kinds=set())
    kube = offline_source(tmp_path, registry, ENDPOINT_SLICE)
    events = b"".join(
        b'{"type": "ADDED", "object": {"metadata": {"name": "%s", "namespace": "db", "resourceVersion": "9", '
        b'"labels": {"%s": "cassandra", "multicluster.kubernetes.io/source-cluster": "east"}}, '
        b'"endpoints": [{"addresses": ["10.1.0.1"]}]}}\n' % (name, label)
        for name, label in ((b"local", b"kubernetes.io/service-name"),
                            (b"imported", b"multicluster.kubernetes.io/service-name")))
    kube._list_functions[ENDPOINT_SLICE] = lambda **params: ScriptedStream(events)
    kube._watch(Resource(ENDPOINT_SLICE), kube.status.resources[ENDPOINT_SLICE])
    kube._applier.close()
    kube._applier.run()
    assert registry.counts() == {ENDPOINT_SLICE: 1}
    kube._api.close()

