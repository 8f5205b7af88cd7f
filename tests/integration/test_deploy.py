"""The container image and the cluster manifests: deploy/, Dockerfile, .dockerignore.

Real parts: the Kubernetes API's OpenAPI schemas (kubernetes-validate, strict, so an unknown or
misspelt field fails as the API server would reject it), and pip installing the package from a
copy of what the Dockerfile's build stage copies, with the interpreter running the tests, then the
installed `dns-server` entry point.  Stand-ins: no container runtime and no cluster run here, so the
Dockerfile is read by a small parser of its instructions and the Corefiles by a reader of their
block and directive structure; the tests check that the pieces agree with each other (probes with
the Corefile's health/ready ports, Services with container ports, the image's command with the
Deployment's arguments).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import dns_server

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COREDNS = DEPLOY / "coredns"
NODELOCAL = DEPLOY / "nodelocaldns"
MIGRATION_PATCH = DEPLOY / "migrate" / "coredns-deployment-patch.yaml"

# The oldest Kubernetes release still common in clusters, and the newest the validator ships.
KUBERNETES_VERSIONS = ("1.32", kubernetes_validate.latest_version())

HEALTH_PORT = 8080  # CoreDNS health: ":8080" when no address is given
READY_PORT = 8181  # CoreDNS ready: ":8181"
NODELOCAL_ADDRESS = "169.254.20.10"  # NodeLocal DNSCache's link-local address

# kubeadm's CoreDNS ConfigMap template (kubernetes cmd/kubeadm/app/phases/addons/dns/manifests.go),
# rendered for DNSDomain=cluster.local: `{{- if .DNSDomain }} {` joins `cache 30` and its block.
KUBEADM_COREFILE = """\
.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30 {
       disable success cluster.local
       disable denial cluster.local
    }
    loop
    reload
    loadbalance
}
"""

Manifest = dict[str, Any]


def load(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def objects(directory: Path) -> dict[tuple[str, str], Manifest]:
    """The Kubernetes objects of a kustomization directory, by (kind, name)."""
    found = {}
    for path in sorted(directory.glob("*.yaml")):
        for doc in load(path):
            if doc["kind"] != "Kustomization":
                found[doc["kind"], doc["metadata"]["name"]] = doc
    return found


def pod_spec(workload: Manifest) -> Manifest:
    spec: Manifest = workload["spec"]["template"]["spec"]
    return spec


def only_container(workload: Manifest) -> Manifest:
    containers: list[Manifest] = pod_spec(workload)["containers"]
    assert len(containers) == 1
    return containers[0]


def container_port(container: Manifest, port: int | str, protocol: str = "TCP") -> int:
    """A probe's or a Service's target port as a number (a name is looked up in the container)."""
    if isinstance(port, int):
        return port
    matches = [p for p in container["ports"] if p["name"] == port and p.get("protocol", "TCP") == protocol]
    assert len(matches) == 1, f"no {protocol} port named {port!r}"
    return int(matches[0]["containerPort"])


@dataclass
class Directive:
    name: str
    args: list[str]
    block: list[Directive] = field(default_factory=list)


def read_corefile(text: str) -> dict[str, list[Directive]]:
    """Server blocks by their first key, each a list of directives with their nested blocks.

    Enough for the Corefiles in deploy/: one key per block, braces at line ends, `#` comments.
    """
    blocks: dict[str, list[Directive]] = {}
    open_blocks: list[list[Directive]] = []
    for line in text.splitlines():
        words = line.split("#")[0].split()
        if not words:
            continue
        if words == ["}"]:
            open_blocks.pop()
            continue
        opens = words[-1] == "{"
        words = words[:-1] if opens else words
        if not open_blocks:
            assert opens, f"a server block must open with its keys: {line!r}"
            blocks[words[0]] = []
            open_blocks.append(blocks[words[0]])
            continue
        directive = Directive(words[0], words[1:])
        open_blocks[-1].append(directive)
        if opens:
            open_blocks.append(directive.block)
    assert not open_blocks, "unclosed block"
    return blocks


def directive(directives: list[Directive], name: str) -> Directive:
    matches = [d for d in directives if d.name == name]
    assert len(matches) == 1, f"expected one {name!r} directive, found {len(matches)}"
    return matches[0]


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def corefile_of(directory: Path, configmap: str) -> str:
    text: str = objects(directory)["ConfigMap", configmap]["data"]["Corefile"]
    return text


# --- every manifest is a valid Kubernetes object ---------------------------------------------

MANIFEST_FILES = sorted(p for p in DEPLOY.glob("*/*.yaml") if p.name != "kustomization.yaml" and p != MIGRATION_PATCH)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", MANIFEST_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_manifests_validate_against_the_kubernetes_schemas(path: Path, version: str) -> None:
    """Real: the OpenAPI schemas of each Kubernetes version, strict (unknown fields fail)."""
    docs = load(path)
    assert docs
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            pytest.fail(f"{path.name}: {doc['kind']} {doc['metadata']['name']}: {where}: {error.message}")


@pytest.mark.parametrize("directory", [COREDNS, NODELOCAL], ids=lambda p: p.name)
def test_kustomization_lists_every_manifest_of_its_directory(directory: Path) -> None:
    """Stand-in for kustomize: `kubectl apply -k` applies exactly the files beside it."""
    kustomization = load(directory / "kustomization.yaml")[0]
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    assert set(listed) == {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}


# --- the CoreDNS add-on, one for one ------------------------------------------------------------

def test_objects_keep_the_names_kubeadm_gives_coredns() -> None:
    """Manifests only: what refers to CoreDNS by name (RBAC, PDBs, autoscalers, habits) still works."""
    assert set(objects(COREDNS)) == {
        ("ServiceAccount", "coredns"), ("ClusterRole", "system:coredns"),
        ("ClusterRoleBinding", "system:coredns"), ("ConfigMap", "coredns"), ("Deployment", "coredns"),
        ("PodDisruptionBudget", "coredns"), ("Service", "kube-dns"),
    }
    assert all(o["metadata"].get("namespace", "kube-system") == "kube-system" for o in objects(COREDNS).values())
    deployment = objects(COREDNS)["Deployment", "coredns"]
    # `kubectl apply` over kubeadm's Deployment merges containers by name: same name, one container.
    assert only_container(deployment)["name"] == "coredns"
    assert pod_spec(deployment)["serviceAccountName"] == "coredns"


def test_configmap_holds_the_corefile_kubeadm_writes() -> None:
    """Manifests only, against kubeadm's template rendered for cluster.local."""
    assert corefile_of(COREDNS, "coredns") == KUBEADM_COREFILE


def test_configmap_corefile_is_corefile_example() -> None:
    """Manifests only: the ConfigMap and the repository's Corefile.example say the same."""
    example = REPO / "Corefile.example"
    if not example.exists():
        pytest.skip("Corefile.example arrives with the directives branch")
    assert corefile_of(COREDNS, "coredns") == example.read_text()


def test_probes_and_metrics_port_are_the_corefiles() -> None:
    """Manifests only: the kubelet probes and Prometheus scrapes where the Corefile listens."""
    found = objects(COREDNS)
    block = read_corefile(corefile_of(COREDNS, "coredns"))[".:53"]
    container = only_container(found["Deployment", "coredns"])

    health, ready = directive(block, "health"), directive(block, "ready")
    health_port = host_port(health.args[0])[1] if health.args else HEALTH_PORT
    ready_port = host_port(ready.args[0])[1] if ready.args else READY_PORT
    liveness, readiness = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
    assert (liveness["path"], container_port(container, liveness["port"])) == ("/health", health_port)
    assert (readiness["path"], container_port(container, readiness["port"])) == ("/ready", ready_port)
    assert container["livenessProbe"]["initialDelaySeconds"] == 60
    assert container["livenessProbe"]["timeoutSeconds"] == 5
    assert container["livenessProbe"]["failureThreshold"] == 5

    # `prometheus` without an address listens on localhost only: the Corefile must name all interfaces.
    prometheus = directive(block, "prometheus")
    assert prometheus.args, "prometheus without an address is unreachable from Prometheus"
    metrics_host, metrics_port = host_port(prometheus.args[0])
    assert metrics_host == ""
    assert container_port(container, "metrics") == metrics_port
    service = found["Service", "kube-dns"]
    [scraped] = [p for p in service["spec"]["ports"] if p["name"] == "metrics"]
    assert (scraped["port"], container_port(container, scraped["targetPort"])) == (metrics_port, metrics_port)
    assert service["metadata"]["annotations"] == {"prometheus.io/port": str(metrics_port),
                                                  "prometheus.io/scrape": "true"}


def test_kube_dns_service_reaches_the_dns_port_over_udp_and_tcp() -> None:
    """Manifests only: Service kube-dns -> the Deployment's pods -> the Corefile's port."""
    found = objects(COREDNS)
    service, deployment = found["Service", "kube-dns"], found["Deployment", "coredns"]
    container = only_container(deployment)
    [key] = read_corefile(corefile_of(COREDNS, "coredns"))
    dns_port = host_port(key)[1]
    assert service["spec"]["clusterIP"] == "10.96.0.10"
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    served = {(p["protocol"], p["port"], container_port(container, p["targetPort"], p["protocol"]))
              for p in service["spec"]["ports"] if p["name"] != "metrics"}
    assert served == {("UDP", 53, dns_port), ("TCP", 53, dns_port)}


def test_deployment_runs_as_coredns_does() -> None:
    """Manifests only: placement, DNS policy and the locked-down security context."""
    found = objects(COREDNS)
    deployment = found["Deployment", "coredns"]
    spec, container = pod_spec(deployment), only_container(deployment)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels == {"k8s-app": "kube-dns"} == deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["replicas"] == 2
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert spec["dnsPolicy"] == "Default"  # the node's resolv.conf: never forward to ourselves
    [term] = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchExpressions"] == [
        {"key": "k8s-app", "operator": "In", "values": ["kube-dns"]}]
    assert {t["key"] for t in spec["tolerations"]} == {"CriticalAddonsOnly", "node-role.kubernetes.io/control-plane"}

    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "net.ipv4.ip_unprivileged_port_start", "value": "53"} in spec["securityContext"]["sysctls"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}
    assert "cpu" not in container["resources"]["limits"]

    budget = found["PodDisruptionBudget", "coredns"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["maxUnavailable"] == 1


def test_rbac_lets_the_service_account_list_and_watch_what_dns_reads() -> None:
    """Manifests only: the binding ties the pods' account to a role covering every watched resource."""
    found = objects(COREDNS)
    binding = found["ClusterRoleBinding", "system:coredns"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": "system:coredns"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}]
    granted = {(group, resource, verb) for rule in found["ClusterRole", "system:coredns"]["rules"]
               for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]}
    needed = {("", "services"), ("", "namespaces"), ("", "pods"), ("discovery.k8s.io", "endpointslices")}
    assert granted == {(group, resource, verb) for group, resource in needed for verb in ("list", "watch")}


@pytest.mark.parametrize(("directory", "kind", "name", "configmap"), [
    (COREDNS, "Deployment", "coredns", "coredns"),
    (NODELOCAL, "DaemonSet", "node-local-dns", "node-local-dns"),
], ids=["coredns", "nodelocaldns"])
def test_the_conf_argument_names_the_mounted_corefile(directory: Path, kind: str, name: str, configmap: str) -> None:
    """Manifests only: `-conf PATH` is the ConfigMap's Corefile key, mounted read-only at PATH."""
    workload = objects(directory)[kind, name]
    container = only_container(workload)
    flag, path = container["args"]
    assert flag == "-conf"
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == os.path.dirname(path)]
    assert mount["readOnly"] is True
    [volume] = [v for v in pod_spec(workload)["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"] == {"name": configmap, "items": [{"key": "Corefile", "path": os.path.basename(path)}]}
    assert "Corefile" in objects(directory)["ConfigMap", configmap]["data"]


def test_migration_patch_sets_what_the_deployment_has() -> None:
    """Manifests only: swapping the image of a running CoreDNS gives the pod our Deployment's settings."""
    [patch] = load(MIGRATION_PATCH)
    deployment = objects(COREDNS)["Deployment", "coredns"]
    ours = only_container(deployment)
    [patched] = pod_spec(patch)["containers"]
    assert patched["name"] == ours["name"]
    assert patched["image"] == ours["image"]
    assert patched["resources"]["requests"]["memory"] == ours["resources"]["requests"]["memory"]
    assert patched["resources"]["limits"] == ours["resources"]["limits"]
    assert patched["env"] == ours["env"]  # GOMAXPROCS: the number of worker processes
    assert pod_spec(patch)["securityContext"]["sysctls"] == pod_spec(deployment)["securityContext"]["sysctls"]


# --- NodeLocal DNSCache -------------------------------------------------------------------------

def service_env_host(service: str) -> str:
    """The variable the kubelet sets to a Service's cluster IP in pods of its namespace."""
    return service.upper().replace("-", "_") + "_SERVICE_HOST"


def test_nodelocal_corefile_caches_in_front_of_kube_dns() -> None:
    """Manifests only: NodeLocal DNSCache's Corefile, wired to this directory's Services."""
    found = objects(NODELOCAL)
    blocks = read_corefile(corefile_of(NODELOCAL, "node-local-dns"))
    kube_dns = objects(COREDNS)["Service", "kube-dns"]
    upstream = found["Service", "kube-dns-upstream"]
    daemonset = found["DaemonSet", "node-local-dns"]
    assert list(blocks) == ["cluster.local:53", "in-addr.arpa:53", "ip6.arpa:53", ".:53"]
    assert upstream["spec"]["selector"] == kube_dns["spec"]["selector"]
    assert pod_spec(daemonset).get("enableServiceLinks", True)  # the variable below comes from it
    to_cluster_dns = "{$" + service_env_host(upstream["metadata"]["name"]) + "}"
    for key, block in blocks.items():
        assert directive(block, "bind").args == [NODELOCAL_ADDRESS, kube_dns["spec"]["clusterIP"]], key
        assert {"errors", "cache", "reload", "loop", "prometheus"} <= {d.name for d in block}, key
        forward = directive(block, "forward")
        if key == ".:53":
            assert forward.args == [".", "/etc/resolv.conf"]
        else:
            assert forward.args == [".", to_cluster_dns], key
            assert [d.name for d in forward.block] == ["force_tcp"], key
    cache = directive(blocks["cluster.local:53"], "cache")
    assert [(d.name, d.args) for d in cache.block] == [("success", ["9984", "30"]), ("denial", ["9984", "5"])]


def test_nodelocal_probe_and_metrics_are_the_corefiles() -> None:
    """Manifests only: the liveness probe asks the health address; every block exports one metrics port."""
    found = objects(NODELOCAL)
    blocks = read_corefile(corefile_of(NODELOCAL, "node-local-dns"))
    daemonset = found["DaemonSet", "node-local-dns"]
    container, spec = only_container(daemonset), pod_spec(daemonset)
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "Default"

    health = [d for block in blocks.values() for d in block if d.name == "health"]
    assert len(health) == 1
    probe = container["livenessProbe"]["httpGet"]
    assert (probe["host"], probe["port"], probe["path"]) == (*host_port(health[0].args[0]), "/health")

    [metrics_port] = {host_port(directive(block, "prometheus").args[0])[1] for block in blocks.values()}
    assert container_port(container, "metrics") == metrics_port
    service = found["Service", "node-local-dns"]
    assert service["spec"]["clusterIP"] == "None"
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(metrics_port, metrics_port)]
    assert service["spec"]["selector"].items() <= daemonset["spec"]["template"]["metadata"]["labels"].items()
    assert daemonset["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(metrics_port)


def test_nodelocal_runs_as_root_holding_only_net_bind_service() -> None:
    """Manifests only: port 53 on the node's network needs root there; nothing else is granted."""
    daemonset = objects(NODELOCAL)["DaemonSet", "node-local-dns"]
    spec, container = pod_spec(daemonset), only_container(daemonset)
    assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]) == (0, 0)
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False  # the cache reads nothing from the API
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}


# --- the image ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str

    def words(self) -> list[str]:
        return shlex.split(self.arguments)

    def exec_form(self) -> list[str]:
        value = json.loads(self.arguments)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), self.arguments
        return value


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def every(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.every(keyword)
        assert found, f"no {keyword} in stage {self.name or self.base}"
        return found[-1]


def dockerfile_stages(text: str) -> list[Stage]:
    """The build stages of a Dockerfile: instructions with continuation lines joined, comments dropped,
    global ARG defaults substituted into FROM."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and pending):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        if (pending + line).strip():
            logical.append(pending + line.strip())
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for entry in logical:
        keyword, _, arguments = entry.strip().partition(" ")
        instruction = Instruction(keyword.upper(), arguments.strip())
        if instruction.keyword == "FROM":
            words = instruction.words()
            base = words[0]
            for name, value in global_args.items():
                base = base.replace("${" + name + "}", value).replace("$" + name, value)
            stages.append(Stage(base, words[2] if len(words) == 3 and words[1].upper() == "AS" else None))
        elif not stages and instruction.keyword == "ARG":
            name, _, default = instruction.arguments.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append(instruction)
    return stages


def copy_parts(instruction: Instruction) -> tuple[dict[str, str], list[str], str]:
    """COPY's flags (`--from=build` -> {"from": "build"}), sources and destination."""
    words = instruction.words()
    flags = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
    paths = [w for w in words if not w.startswith("--")]
    return flags, paths[:-1], paths[-1]


def read_dockerfile() -> tuple[Stage, Stage]:
    stages = dockerfile_stages((REPO / "Dockerfile").read_text())
    assert [s.name for s in stages] == ["build", None]
    return stages[0], stages[1]


def test_dockerfile_builds_a_non_root_image_running_the_corefile() -> None:
    """Stand-in: the Dockerfile read instruction by instruction (no container runtime here)."""
    build, final = read_dockerfile()
    assert build.base == final.base  # the interpreter installed for is the one that runs
    assert final.base.startswith("python:3.11-slim")

    uid, _, gid = final.last("USER").arguments.partition(":")
    assert uid.isdigit() and gid.isdigit(), "runAsNonRoot can only check a numeric user"
    assert int(uid) != 0 and int(gid) != 0

    exposed = set()
    for instruction in final.every("EXPOSE"):
        exposed |= {word if "/" in word else word + "/tcp" for word in instruction.words()}
    assert exposed == {"53/udp", "53/tcp", "8080/tcp", "8181/tcp", "9153/tcp"}
    assert final.last("ENTRYPOINT").exec_form() == ["dns-server"]
    assert final.last("CMD").exec_form() == ["-conf", "/etc/coredns/Corefile"]

    # The final stage gets the installed package from the build stage's prefix and nothing else.
    [install] = [i.words() for i in build.every("RUN") if i.words()[:2] == ["pip", "install"]]
    [prefix] = [w.partition("=")[2] for w in install if w.startswith("--prefix=")]
    assert [copy_parts(c) for c in final.every("COPY")] == [({"from": "build"}, [prefix], "/usr/local")]


def test_deployment_runs_the_image_built_from_this_version() -> None:
    """Manifests and Dockerfile: the Deployment passes the image's own command; the tag is the version."""
    _, final = read_dockerfile()
    version = dns_server.__version__
    for workload in (objects(COREDNS)["Deployment", "coredns"], objects(NODELOCAL)["DaemonSet", "node-local-dns"]):
        container = only_container(workload)
        assert container["image"] == f"dns-server:{version}"
        assert "command" not in container  # the image's ENTRYPOINT runs
    assert only_container(objects(COREDNS)["Deployment", "coredns"])["args"] == final.last("CMD").exec_form()


def test_dockerignore_keeps_what_the_build_copies() -> None:
    """Stand-in: .dockerignore read as Docker does for a whitelist (`*`, then `!path` re-includes)."""
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert patterns[0] == "*"
    build, _ = read_dockerfile()
    for instruction in build.every("COPY"):
        for source in copy_parts(instruction)[1]:
            assert "!" + source in patterns, f"{source} is excluded from the build context"


def package_files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.suffix == ".py" or p.name == "py.typed"}


def install_as_the_dockerfile_does(tmp_path: Path, env: dict[str, str] | None = None) -> tuple[Path, dict[str, str]]:
    """pip (this interpreter) builds and installs a copy of what the build stage copies into a
    `--prefix`, as the Dockerfile does; its build requirements come from the package index, like
    `scripts/test`'s install, and the dependencies are not installed again: they come from this
    virtualenv.  Returns the prefix and the environment that imports the installed copy."""
    build, _ = read_dockerfile()
    context = tmp_path / "src"
    for instruction in build.every("COPY"):
        _, sources, destination = copy_parts(instruction)
        target = context / destination
        for source in sources:
            origin = REPO / source
            if origin.is_dir():  # Docker copies a directory's contents
                shutil.copytree(origin, target, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.so"))  # .so: the checkout's own build
            elif destination.endswith("/") or len(sources) > 1:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target / origin.name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)

    prefix = tmp_path / "install"
    # --ignore-installed: without it pip uninstalls the checkout's own install from this interpreter's
    # environment (the README's .venv) before installing under the prefix.
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
           "--ignore-installed", f"--prefix={prefix}", str(context)]
    ours_before = _installed_here()
    installed = subprocess.run(pip, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})
    assert installed.returncode == 0, installed.stderr
    assert _installed_here() == ours_before, "installing under a prefix removed this environment's own install"

    site = sysconfig.get_path("platlib", "posix_prefix", {"base": str(prefix), "platbase": str(prefix)})
    # Every module and py.typed, subpackages included (`--help` alone imports only a few).
    assert package_files(Path(site) / "dns_server") == package_files(REPO / "dns_server")

    installed_env = {**os.environ, "PYTHONPATH": site}
    result = subprocess.run([str(prefix / "bin" / "dns-server"), "--help"], cwd=tmp_path, env=installed_env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: dns-server")
    return prefix, installed_env


def udp_path_installed(tmp_path: Path, env: dict[str, str]) -> str:
    """Which UDP path the installed copy takes, checked to be the installed copy's."""
    probe = "import dns_server.serving.udp as u; print(u.__file__); print('mmsg' if u.MMSG else 'per datagram')"
    where, path = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                                 text=True, timeout=60, check=True).stdout.splitlines()
    assert Path(where).is_relative_to(tmp_path / "install"), "the checkout or an editable install answered"
    return path


def test_package_installs_and_runs_as_the_dockerfile_installs_it(tmp_path: Path) -> None:
    """Real: pip and this machine's C compiler, as the Dockerfile's build stage has them; then the
    installed `dns-server` entry point, which reads UDP with recvmmsg (the compiled part)."""
    _, env = install_as_the_dockerfile_does(tmp_path)
    assert udp_path_installed(tmp_path, env) == "mmsg"


def test_without_a_compiler_the_package_installs_and_takes_the_pure_python_path(tmp_path: Path) -> None:
    """Real pip, with `CC=false` standing in for a machine without a C compiler: the install goes on
    without the compiled part, and the installed server reads one datagram per system call."""
    _, env = install_as_the_dockerfile_does(tmp_path, {"CC": "false"})
    assert udp_path_installed(tmp_path, env) == "per datagram"


def test_the_dockerfile_build_stage_has_a_compiler_and_the_image_does_not() -> None:
    """Stand-in: the Dockerfile read instruction by instruction.  python:3.11-slim has no C compiler,
    so the build stage installs one for the compiled part; the final stage gets only the install."""
    build, final = read_dockerfile()
    [apt] = [i.words() for i in build.every("RUN") if "apt-get" in i.words()]
    assert {"gcc", "libc6-dev"} <= set(apt)
    assert [i for i in final.every("RUN") if "apt-get" in i.words()] == []


def _installed_here() -> bool:
    """Whether this interpreter's environment has dns-server installed (the README's .venv does)."""
    # -I: the environment alone, not the checkout's own dns_server.egg-info in the working directory
    probe = [sys.executable, "-I", "-c", "import importlib.metadata as m; m.distribution('dns-server')"]
    return subprocess.run(probe, capture_output=True, timeout=60).returncode == 0
