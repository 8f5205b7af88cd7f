"""`forward` to DNS-over-TLS upstreams: what the Corefile's `tls://` TOs, `tls` and `tls_servername` give,
and the start refused (file:line, what is wrong) when a `tls` file cannot be used.

The certificate files are real (tests/certificates.py, by openssl): the setup reads them at start.
The TLS exchanges themselves: tests/integration/test_forward_tls.py, against unbound serving DoT.
"""

from __future__ import annotations

import ssl

import pytest

from dns_server.config.corefile import parse_text
from dns_server.errors import ConfigError
from dns_server.plugins import build_config
from dns_server.plugins.forward.setup import ForwardSettings, Upstream
from tests.certificates import Certificates, make_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def forward(text: str) -> ForwardSettings:
    """The one forward directive of a one-block Corefile."""
    (block,) = build_config(parse_text(text)).blocks
    (settings,) = block.setting("forward")
    assert isinstance(settings, ForwardSettings)
    return settings


def refusal(text: str) -> str:
    with pytest.raises(ConfigError) as raised:
        build_config(parse_text(text))
    return str(raised.value)


def test_tls_tos_default_to_port_853_and_to_their_ip_as_server_name() -> None:
    settings = forward(". {\n    forward . tls://192.0.2.53 tls://[2001:db8::53]:8853 192.0.2.1\n}\n")
    assert settings.to == (Upstream("192.0.2.53", 853, "192.0.2.53"), Upstream("2001:db8::53", 8853, "2001:db8::53"),
                           Upstream("192.0.2.1", 53, None))
    assert [str(upstream) for upstream in settings.to] == ["tls://192.0.2.53:853", "tls://[2001:db8::53]:8853",
                                                           "192.0.2.1:53"]


def test_tls_servername_names_every_tls_to_of_its_directive_only() -> None:
    settings = forward(". {\n    forward . tls://192.0.2.53 192.0.2.1 tls://192.0.2.54:8853 {\n"
                       "        tls_servername Dns.Example.\n    }\n}\n")
    assert settings.to == (Upstream("192.0.2.53", 853, "Dns.Example"), Upstream("192.0.2.1", 53, None),
                           Upstream("192.0.2.54", 8853, "Dns.Example"))


def test_a_tls_to_may_carry_its_own_server_name() -> None:
    """CoreDNS's `tls://IP%NAME[:PORT]`."""
    settings = forward(". {\n    forward . tls://192.0.2.53%dns.quad9.net tls://192.0.2.54%dot.test:8853 "
                       "tls://[2001:db8::53%dns.google]:853 tls://192.0.2.55\n}\n")
    assert settings.to == (Upstream("192.0.2.53", 853, "dns.quad9.net"), Upstream("192.0.2.54", 8853, "dot.test"),
                           Upstream("2001:db8::53", 853, "dns.google"), Upstream("192.0.2.55", 853, "192.0.2.55"))


def test_plain_tos_have_no_tls_context() -> None:
    assert forward(". {\n    forward . 192.0.2.1\n}\n").tls_context is None


def test_without_tls_the_system_trust_store_verifies_names_with_tls_1_2_at_least() -> None:
    for options in ("", "{\n        tls\n    }"):
        context = forward(f". {{\n    forward . tls://192.0.2.53 {options}\n}}\n").tls_context
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
        assert context.minimum_version is ssl.TLSVersion.TLSv1_2


def test_tls_ca_trusts_that_ca_only(certs: Certificates) -> None:
    context = forward(f". {{\n    forward . tls://192.0.2.53 {{\n        tls {certs.ca}\n    }}\n}}\n").tls_context
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert [cert["subject"] for cert in context.get_ca_certs()] == [((("commonName", "DNS over TLS test CA"),),)]


def test_tls_with_a_client_certificate_and_key_with_or_without_ca(certs: Certificates) -> None:
    for args in (f"{certs.server} {certs.server_key}", f"{certs.server} {certs.server_key} {certs.ca}"):
        context = forward(f". {{\n    forward . tls://192.0.2.53 {{\n        tls {args}\n    }}\n}}\n").tls_context
        assert isinstance(context, ssl.SSLContext) and context.verify_mode is ssl.CERT_REQUIRED


@pytest.mark.parametrize(("args", "message"), [
    ("{dir}/missing.pem", "error reading {dir}/missing.pem: open {dir}/missing.pem: no such file or directory"),
    ("{dir}", "error reading {dir}: open {dir}: is a directory"),
    ("{key}", "could not read root certs: no PEM certificate in {key}"),
    ("{dir}/missing.pem {key}", "could not load TLS cert: open {dir}/missing.pem: no such file or directory"),
    ("{cert} {dir}/missing.pem", "could not load TLS cert: open {dir}/missing.pem: no such file or directory"),
    ("{cert} {key} {dir}/missing.pem",
     "error reading {dir}/missing.pem: open {dir}/missing.pem: no such file or directory"),
    ("{cert} {dir}/ca-key.pem", "could not load TLS cert: {cert} and {dir}/ca-key.pem are not a PEM certificate "
                                "and its unencrypted private key"),
    ("{key} {cert}", "could not load TLS cert: {key} and {cert} are not a PEM certificate and its unencrypted "
                     "private key"),
])
def test_a_tls_file_that_cannot_be_used_refuses_the_start_naming_its_line(certs: Certificates, args: str,
                                                                          message: str) -> None:
    names = {"dir": certs.ca.parent, "cert": certs.server, "key": certs.server_key}
    text = f". {{\n    forward . tls://192.0.2.53 {{\n        policy sequential\n        tls {args.format(**names)}\n" \
           "    }\n}\n"
    assert refusal(text) == f"plugin/forward: Corefile:4 - Error during parsing: {message.format(**names)}"


@pytest.mark.parametrize(("options", "message"), [
    ("tls a.pem b.pem c.pem d.pem", "Wrong argument count or unexpected line ending after 'd.pem'"),
    ("tls_servername", "Wrong argument count or unexpected line ending after 'tls_servername'"),
    ("tls_servername a.example b.example", "Wrong argument count or unexpected line ending after 'b.example'"),
])
def test_tls_options_with_the_wrong_argument_count_refuse_the_start(options: str, message: str) -> None:
    text = f". {{\n    forward . tls://192.0.2.53 {{\n        {options}\n    }}\n}}\n"
    assert refusal(text) == f"plugin/forward: Corefile:3 - Error during parsing: {message}"
