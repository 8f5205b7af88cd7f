# The cluster DNS server as a container image.  In a cluster it reads the API through its service
# account (see deploy/); for a local try-out, mount manifests and pass --fixtures.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dns_server ./dns_server
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
COPY zones /zones
USER 65534:65534
EXPOSE 53/udp 53/tcp
ENTRYPOINT ["dns-server"]
CMD ["--fixtures", "/zones", "--listen", "0.0.0.0:5353"]
