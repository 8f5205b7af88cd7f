"""Certificates for the DNS-over-TLS tests, made by the `openssl` command (installed by scripts/test).

`make_certificates(directory)` makes a test CA and a server certificate it signs, for the name
`dot.test` and the address 127.0.0.1, valid for two days: what a DNS-over-TLS upstream presents.
The CA is trusted nowhere but where a test names it (`tls CA`, SSL_CERT_FILE).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SERVER_NAME = "dot.test"
SERVER_ADDRESS = "127.0.0.1"

CONFIG = f"""\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:{SERVER_NAME},IP:{SERVER_ADDRESS}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the test CA's certificate (PEM)
    server: Path  # the server's certificate, signed by the CA
    server_key: Path  # its private key (PEM, unencrypted)


def _openssl(directory: Path, *args: str) -> None:
    program = shutil.which("openssl")
    if program is None:
        raise AssertionError("openssl is not installed: scripts/test installs it (apt-get install openssl)")
    subprocess.run([program, *args], cwd=directory, check=True, capture_output=True, timeout=60)


def make_certificates(directory: Path) -> Certificates:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "openssl.cnf"
    config.write_text(CONFIG)
    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(directory, "req", "-x509", "-config", str(config), "-extensions", "ca", *key, "-keyout", "ca-key.pem",
             "-out", "ca.pem", "-days", "2", "-subj", "/CN=DNS over TLS test CA")
    _openssl(directory, "req", "-new", "-config", str(config), *key, "-keyout", "server-key.pem",
             "-out", "server.csr", "-subj", f"/CN={SERVER_NAME}")
    _openssl(directory, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
             "-set_serial", "2", "-days", "2", "-extfile", str(config), "-extensions", "server", "-out", "server.pem")
    return Certificates(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
