"""RabbitMQ over TLS (`amqps://`), configured the way operators do it: a private RabbitMQ node
with a TLS listener on a free loopback port, a CA and server certificate made here with
`cryptography`, and tasksync's publisher, consumer and CLI connecting with `--amqp-ca-file`
(and a client certificate). Without the CA, with another CA or under another host name the
connection fails with a certificate error that says so.

The machine's own trust store (and REQUESTS_CA_BUNDLE) never trusts the test CA, so "without the
CA" really means the system's CAs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bridge.ledger import Ledger
from bridge.messaging import Direction, Publisher, PublishError
from bridge.messaging.connection import (
    AmqpCertificateError,
    AmqpHandshakeError,
    AmqpTls,
    connection_parameters,
    with_tls,
)
from tests.messaging.helpers import TEST_TOPOLOGY, RecordingHandler, running_consumer, sc_change
from tests.support.rabbitmq import PrivateRabbitNode, free_port
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
TASKSYNC = Path(sys.executable).with_name("tasksync")
CLIENT_NAME = "tasksync-tls-test-client"


# -- certificates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """Where the test's PEM files are."""

    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def _leaf(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    common_name: str,
    *,
    usage: x509.ObjectIdentifier,
    names: list[x509.GeneralName],
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_certificate, ca_key = ca
    key = _key()
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def make_pki(directory: Path) -> Pki:
    """A test CA; a server certificate for localhost and 127.0.0.1 and a client certificate it
    signed; and an unrelated CA."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca("tasksync TLS test CA")
    other = _ca("some other CA")
    server = _leaf(
        ca,
        "localhost",
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        names=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client = _leaf(ca, CLIENT_NAME, usage=ExtendedKeyUsageOID.CLIENT_AUTH, names=[])
    pki = Pki(
        ca=directory / "ca.pem",
        other_ca=directory / "other-ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    pki.ca.write_bytes(_pem(ca[0]))
    pki.other_ca.write_bytes(_pem(other[0]))
    pki.server_cert.write_bytes(_pem(server[0]))
    _write_key(server[1], pki.server_key)
    pki.client_cert.write_bytes(_pem(client[0]))
    _write_key(client[1], pki.client_key)
    return pki


# -- the private node with a TLS listener ----------------------------------------------------


class TlsRabbitNode(PrivateRabbitNode):
    """A private node that also listens for TLS on a free loopback port; it asks clients for a
    certificate (verify_peer) but lets them connect without one."""

    def __init__(self, base_dir: Path, pki: Pki) -> None:
        super().__init__(base_dir, name=f"tasksync-tls-{uuid.uuid4().hex[:8]}")
        self.pki = pki
        self.tls_port = free_port()
        with (base_dir / "rabbitmq.conf").open("a") as config:
            config.write(
                f"listeners.ssl.default = 127.0.0.1:{self.tls_port}\n"
                f"ssl_options.cacertfile = {pki.ca}\n"
                f"ssl_options.certfile = {pki.server_cert}\n"
                f"ssl_options.keyfile = {pki.server_key}\n"
                "ssl_options.verify = verify_peer\n"
                "ssl_options.fail_if_no_peer_cert = false\n"
            )

    def start(self, timeout: float = 90.0) -> None:
        super().start(timeout)

        def tls_listening() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.tls_port)) == 0

        wait_for(tls_listening, timeout=30, what=f"{self.node_name}'s TLS listener")

    def amqps_url(self, vhost: str = "/", *, host: str = "127.0.0.1") -> str:
        quoted = "%2F" if vhost == "/" else vhost
        return f"amqps://guest:guest@{host}:{self.tls_port}/{quoted}"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[TlsRabbitNode]:
    node = TlsRabbitNode(tmp_path_factory.mktemp("rabbit-tls"), pki)
    node.start()
    try:
        yield node
    finally:
        node.remove()


@pytest.fixture
def vhost(tls_node: TlsRabbitNode) -> Iterator[str]:
    """A fresh vhost on the TLS node, with the test topology declared (over plain AMQP)."""
    with tls_node.fresh_vhost("tasksync-tls") as fresh:
        connection = pika.BlockingConnection(pika.URLParameters(fresh.amqp_url))
        try:
            TEST_TOPOLOGY.declare(connection.channel())
        finally:
            connection.close()
        yield fresh.name


def connect(url: str) -> Any:
    return pika.BlockingConnection(connection_parameters(url, name="tasksync TLS test"))


def connection_error(url: str) -> str:
    """Why connecting to `url` failed, as the operator is told. The error is a certificate
    error (ssl's) and a connection error (pika's), so every caller handles it."""
    with pytest.raises(AmqpCertificateError) as caught:
        connect(url).close()
    assert isinstance(caught.value, ssl.SSLCertVerificationError)
    assert isinstance(caught.value, pika.exceptions.AMQPConnectionError)
    return str(caught.value)


# -- tests -------------------------------------------------------------------------------------


def test_publisher_and_consumer_work_over_amqps_with_the_ca(
    tls_node: TlsRabbitNode, pki: Pki, vhost: str, tmp_path: Path
) -> None:
    url = with_tls(tls_node.amqps_url(vhost), AmqpTls(ca_file=str(pki.ca)))
    change = sc_change("task-tls")
    handler = RecordingHandler()
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    with running_consumer(url, handler, ledger, direction=Direction.TO_SALESFORCE) as consumer:
        with Publisher(url, topology=TEST_TOPOLOGY, name="tls publisher") as publisher:
            publisher.publish(change)
        wait_for(
            lambda: str(change.message_id) in handler.seen_ids(),
            timeout=15,
            what="the change published over TLS to be consumed over TLS",
        )
        assert consumer.stats.applied >= 1
    ledger.close()


def test_a_client_certificate_is_presented_when_configured(
    tls_node: TlsRabbitNode, pki: Pki
) -> None:
    url = with_tls(
        tls_node.amqps_url(),
        AmqpTls(ca_file=str(pki.ca), cert_file=str(pki.client_cert), key_file=str(pki.client_key)),
    )
    connection = connect(url)
    try:

        def subjects() -> list[str]:
            listed = tls_node.rabbitmqctl(
                "list_connections", "ssl", "peer_cert_subject", "--quiet", "--no-table-headers"
            )
            assert listed.returncode == 0, listed.stdout + listed.stderr
            return [line for line in listed.stdout.splitlines() if CLIENT_NAME in line]

        (line,) = wait_for(subjects, timeout=15, what="the connection with its client certificate")
        assert line.split()[0] == "true"  # ssl
    finally:
        connection.close()


def test_the_host_name_may_be_given_for_a_connection_by_address(
    tls_node: TlsRabbitNode, pki: Pki
) -> None:
    by_name = with_tls(tls_node.amqps_url(host="localhost"), AmqpTls(ca_file=str(pki.ca)))
    connect(by_name).close()
    sni = with_tls(tls_node.amqps_url(), AmqpTls(ca_file=str(pki.ca), server_name="localhost"))
    connect(sni).close()


def test_without_the_ca_the_system_trust_refuses_the_certificate(tls_node: TlsRabbitNode) -> None:
    explained = connection_error(tls_node.amqps_url())
    assert explained.startswith("TLS: RabbitMQ's certificate is not trusted"), explained
    assert "--amqp-ca-file" in explained


def test_another_ca_refuses_the_certificate(tls_node: TlsRabbitNode, pki: Pki) -> None:
    url = with_tls(tls_node.amqps_url(), AmqpTls(ca_file=str(pki.other_ca)))
    explained = connection_error(url)
    assert explained.startswith("TLS: RabbitMQ's certificate is not trusted"), explained


def test_the_host_name_is_verified(tls_node: TlsRabbitNode, pki: Pki) -> None:
    url = with_tls(
        tls_node.amqps_url(), AmqpTls(ca_file=str(pki.ca), server_name="rabbitmq.example.com")
    )
    explained = connection_error(url)
    assert explained.startswith(
        "TLS: RabbitMQ's certificate does not carry the host name 'rabbitmq.example.com'"
    ), explained


def test_amqps_to_a_plain_amqp_port_says_it_is_no_tls_listener(tls_node: TlsRabbitNode) -> None:
    url = f"amqps://guest:guest@127.0.0.1:{tls_node.amqp_port}/%2F"
    with pytest.raises(AmqpHandshakeError) as caught:
        connect(url).close()
    assert isinstance(caught.value, pika.exceptions.AMQPConnectionError)
    assert str(caught.value).startswith("TLS handshake with RabbitMQ failed"), caught.value
    assert "TLS listener" in str(caught.value)


def test_a_publisher_without_the_ca_says_why_it_cannot_publish(tls_node: TlsRabbitNode) -> None:
    with (
        Publisher(
            tls_node.amqps_url(), topology=TEST_TOPOLOGY, name="untrusting publisher"
        ) as publisher,
        pytest.raises(PublishError, match="RabbitMQ's certificate is not trusted"),
    ):
        publisher.publish(sc_change("task-untrusted"), timeout=10)


# -- the command line --------------------------------------------------------------------------


def tasksync(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TASKSYNC_")}
    environment.update(env or {})
    return subprocess.run(
        [str(TASKSYNC), *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_the_cli_connects_over_amqps_with_the_ca_from_its_option_or_variable(
    tls_node: TlsRabbitNode, pki: Pki
) -> None:
    with tls_node.fresh_vhost("tasksync-tls-cli") as fresh:
        url = tls_node.amqps_url(fresh.name)
        by_option = tasksync(
            "topology", "declare", "--amqp-url", url, "--amqp-ca-file", str(pki.ca)
        )
        assert by_option.returncode == 0, by_option.stderr
        assert f"in vhost {fresh.name!r}" in by_option.stdout
        by_variables = tasksync(
            "topology",
            "declare",
            env={
                "TASKSYNC_AMQP_URL": url,
                "TASKSYNC_AMQP_CA_FILE": str(pki.ca),
                "TASKSYNC_AMQP_CERT_FILE": str(pki.client_cert),
                "TASKSYNC_AMQP_KEY_FILE": str(pki.client_key),
            },
        )
        assert by_variables.returncode == 0, by_variables.stderr
        without_ca = tasksync("topology", "declare", "--amqp-url", url)
        assert without_ca.returncode == 3, without_ca.stderr
        assert "TLS: RabbitMQ's certificate is not trusted" in without_ca.stderr
        assert "Traceback" not in without_ca.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--amqp-ca-file", "{missing}"],
            "Invalid value for '--amqp-ca-file' / TASKSYNC_AMQP_CA_FILE: {missing}: no such file",
        ),
        (
            ["--amqp-ca-file", "{unreadable}"],
            "Invalid value for '--amqp-ca-file' / TASKSYNC_AMQP_CA_FILE: {unreadable}: "
            "not PEM CA certificates",
        ),
        (
            ["--amqp-cert-file", "{client_cert}"],
            "Invalid value for '--amqp-cert-file' / TASKSYNC_AMQP_CERT_FILE: {client_cert}: "
            "not a PEM client certificate and its private key",
        ),
        (
            ["--amqp-key-file", "{client_key}"],
            "--amqp-key-file needs --amqp-cert-file",
        ),
        (
            ["--amqp-cert-file", "{client_cert}", "--amqp-key-file", "{open_key}"],
            "Invalid value for '--amqp-key-file' / TASKSYNC_AMQP_KEY_FILE: {open_key}: others "
            "than its owner may read or write it (mode 0644)",
        ),
        (
            ["--amqp-url", "amqp://guest:guest@127.0.0.1:5672/%2F", "--amqp-ca-file", "{ca}"],
            "--amqp-ca-file only applies to TLS: --amqp-url must start with amqps://",
        ),
    ],
    ids=["missing", "not-pem", "cert-only", "key-only", "open-key", "plain-amqp"],
)
def test_bad_tls_settings_are_refused_at_start_naming_the_option(
    pki: Pki, tmp_path: Path, args: list[str], message: str
) -> None:
    files = {
        "missing": str(tmp_path / "nowhere.pem"),
        "unreadable": str(tmp_path / "garbage.pem"),
        "ca": str(pki.ca),
        "client_cert": str(pki.client_cert),
        "client_key": str(pki.client_key),
        "open_key": str(tmp_path / "open.key"),
    }
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    (tmp_path / "open.key").write_bytes(pki.client_key.read_bytes())
    (tmp_path / "open.key").chmod(0o644)
    argv = [arg.format(**files) for arg in args]
    if "--amqp-url" not in argv:
        argv = ["--amqp-url", "amqps://guest:guest@127.0.0.1:1/%2F", *argv]
    result = tasksync("worker", "to-salesconnect", *argv)
    assert result.returncode == 2, result.stderr
    assert message.format(**files) in " ".join(result.stderr.split()), result.stderr


def test_tls_settings_given_twice_alike_are_one_and_unlike_are_refused(pki: Pki) -> None:
    """A child of `tasksync up` inherits both the finished URL and the variables."""
    base = "amqps://guest:guest@127.0.0.1:5671/%2F"
    once = with_tls(base, AmqpTls(ca_file=str(pki.ca)))
    assert with_tls(once, AmqpTls(ca_file=str(pki.ca))) == once
    with pytest.raises(ValueError, match=r"gives cacertfile=.* already, not .*other-ca\.pem"):
        with_tls(once, AmqpTls(ca_file=str(pki.other_ca)))
    with pytest.raises(ValueError, match="only apply to TLS: the RabbitMQ URL must start with"):
        with_tls("amqp://guest:guest@127.0.0.1:5672/%2F", AmqpTls(ca_file=str(pki.ca)))


def test_pikas_own_ssl_options_parameter_is_refused_as_it_can_turn_verification_off() -> None:
    url = "amqps://guest:guest@127.0.0.1:5671/%2F?ssl_options=%7B%27protocol%27%3A+2%7D"
    with pytest.raises(ValueError, match="ssl_options is not supported: use --amqp-ca-file"):
        connection_parameters(url, name="-")
