# The cluster DNS server as a container image that takes CoreDNS's place: `dns-server -conf
# /etc/coredns/Corefile`, the Corefile coming from the `coredns` ConfigMap (deploy/coredns/).  Like
# CoreDNS's image it carries no Corefile of its own: without the ConfigMap it stops with an error
# instead of serving something nobody configured.
#
# Both stages start from the same image, so the interpreter the build stage installs for is the one
# that runs.  Every dependency ships manylinux wheels for amd64 and arm64; the one thing compiled is
# our own small C module for UDP (README, "The compiled part"), with a compiler that only the build
# stage has.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY dns_server ./dns_server
RUN pip install --no-cache-dir --prefix=/install .

FROM ${BASE}
COPY --from=build /install /usr/local
# Nothing installs packages at run time: pip, setuptools and wheel go too.
RUN pip uninstall --yes --quiet pip setuptools wheel
# Log lines reach `kubectl logs` as they are written; the pod's root filesystem is read-only and the
# bytecode was compiled at install.
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# A numeric user, so that the kubelet can check `runAsNonRoot`: 65532, the UID CoreDNS's image runs
# as (distroless `nonroot`).
#
# Port 53: the pod lowers `net.ipv4.ip_unprivileged_port_start` to 53 in its own network namespace
# (a safe sysctl since Kubernetes 1.22).  The NET_BIND_SERVICE it also grants, as CoreDNS's
# manifests do, does not reach a non-root process by itself: runtimes leave added capabilities out of
# the ambient set, so they are gone after exec (kubernetes/kubernetes#56374).  CoreDNS's image works
# around that with a file capability (`setcap cap_net_bind_service=+ep /coredns`).  We set none on
# the interpreter: it would hand the capability to any Python program run in the container, and the
# kernel refuses to exec a binary whose forced capability is missing from the bounding set, so the
# image would not even start with every capability dropped.
USER 65532:65532
EXPOSE 53/udp 53/tcp 8080 8181 9153
ENTRYPOINT ["dns-server"]
CMD ["-conf", "/etc/coredns/Corefile"]
