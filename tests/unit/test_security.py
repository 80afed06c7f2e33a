"""Tests of processor.security: environment parsing, validation, client settings and TLS contexts."""

from __future__ import annotations

import dataclasses
import datetime
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from processor.config import ConfigError
from processor.security import (
    SecuritySettings,
    confluent_settings,
    faust_broker_credentials,
    ssl_context,
    to_env,
)

SASL_PASSWORD = "sasl-pass-4f1c"
KEY_PASSWORD = "key-pass-9b27"

ALL_VARIABLES = {
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CAFILE",
    "KAFKA_SSL_CERTFILE",
    "KAFKA_SSL_KEYFILE",
    "KAFKA_SSL_KEY_PASSWORD",
    "KAFKA_SSL_CHECK_HOSTNAME",
}


@dataclasses.dataclass(frozen=True)
class CertificateFiles:
    """PEM files of a self-signed certificate for "localhost" that is its own CA."""

    cert: Path
    key: Path
    encrypted_key: Path
    key_password: str


def write_certificate_with_cryptography(directory: Path) -> CertificateFiles:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )

    files = CertificateFiles(directory / "cert.pem", directory / "key.pem", directory / "key-encrypted.pem", KEY_PASSWORD)
    files.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    files.encrypted_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
        )
    )
    return files


def write_certificate_with_openssl(directory: Path) -> CertificateFiles:
    files = CertificateFiles(directory / "cert.pem", directory / "key.pem", directory / "key-encrypted.pem", KEY_PASSWORD)
    commands = [
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(files.key), "-out", str(files.cert), "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
        ],
        [
            "openssl", "pkey", "-in", str(files.key), "-aes-256-cbc",
            "-passout", f"pass:{KEY_PASSWORD}", "-out", str(files.encrypted_key),
        ],
    ]  # fmt: skip
    for command in commands:
        subprocess.run(command, check=True, capture_output=True, timeout=60)
    return files


def write_certificate(directory: Path) -> CertificateFiles:
    directory.mkdir(parents=True, exist_ok=True)
    try:
        import cryptography  # noqa: F401
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("making a test certificate needs the cryptography package or the openssl command")
        return write_certificate_with_openssl(directory)
    return write_certificate_with_cryptography(directory)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return write_certificate(tmp_path_factory.mktemp("tls") / "trusted")


@pytest.fixture(scope="module")
def other_certificate(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return write_certificate(tmp_path_factory.mktemp("tls") / "untrusted")


def sasl_env(**overrides: str) -> dict[str, str]:
    return {
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_SASL_USERNAME": "flyte",
        "KAFKA_SASL_PASSWORD": SASL_PASSWORD,
        **overrides,
    }


def handshake(context: ssl.SSLContext, server: CertificateFiles, server_hostname: str) -> None:
    """Complete a TLS handshake with a server on 127.0.0.1 that presents ``server``'s certificate."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(server.cert, server.key)

    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)

        def serve_one() -> None:
            try:
                connection, _address = listener.accept()
                with server_context.wrap_socket(connection, server_side=True) as tls:
                    tls.sendall(b"ok")
            except OSError:
                # The client rejected the certificate, so the server's handshake fails too.
                pass

        server_thread = threading.Thread(target=serve_one, daemon=True)
        server_thread.start()
        try:
            with socket.create_connection(listener.getsockname(), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname=server_hostname) as tls:
                    assert tls.recv(2) == b"ok"
        finally:
            server_thread.join(10)


# Environment parsing


def test_from_env_defaults_to_plaintext() -> None:
    security = SecuritySettings.from_env({})

    assert security == SecuritySettings()
    assert security.protocol == "PLAINTEXT"
    assert security.ssl_check_hostname is True
    assert not security.uses_sasl
    assert not security.uses_ssl


def test_from_env_reads_every_variable(certificate: CertificateFiles) -> None:
    security = SecuritySettings.from_env(
        {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": "flyte",
            "KAFKA_SASL_PASSWORD": SASL_PASSWORD,
            "KAFKA_SSL_CAFILE": str(certificate.cert),
            "KAFKA_SSL_CERTFILE": str(certificate.cert),
            "KAFKA_SSL_KEYFILE": str(certificate.encrypted_key),
            "KAFKA_SSL_KEY_PASSWORD": KEY_PASSWORD,
            "KAFKA_SSL_CHECK_HOSTNAME": "false",
        }
    )

    assert security == SecuritySettings(
        protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="flyte",
        sasl_password=SASL_PASSWORD,
        ssl_cafile=str(certificate.cert),
        ssl_certfile=str(certificate.cert),
        ssl_keyfile=str(certificate.encrypted_key),
        ssl_key_password=KEY_PASSWORD,
        ssl_check_hostname=False,
    )
    assert security.uses_sasl
    assert security.uses_ssl


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ALL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in sasl_env().items():
        monkeypatch.setenv(name, value)

    security = SecuritySettings.from_env()

    assert security.protocol == "SASL_PLAINTEXT"
    assert security.sasl_username == "flyte"
    assert security.sasl_password == SASL_PASSWORD


def test_from_env_ignores_value_case() -> None:
    security = SecuritySettings.from_env(
        sasl_env(KAFKA_SECURITY_PROTOCOL=" sasl_plaintext ", KAFKA_SASL_MECHANISM="scram-sha-256")
    )

    assert security.protocol == "SASL_PLAINTEXT"
    assert security.sasl_mechanism == "SCRAM-SHA-256"


def test_from_env_treats_empty_as_unset() -> None:
    security = SecuritySettings.from_env({name: "" for name in ALL_VARIABLES})

    assert security == SecuritySettings()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("1", True), ("YES", True), ("on", True), ("false", False), ("0", False), ("No", False), ("off", False)],
)
def test_check_hostname_accepts_booleans(text: str, expected: bool) -> None:
    security = SecuritySettings.from_env({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CHECK_HOSTNAME": text})

    assert security.ssl_check_hostname is expected


# Validation


@pytest.mark.parametrize(
    ("env", "expected_parts"),
    [
        (
            {"KAFKA_SECURITY_PROTOCOL": "TLS"},
            ["KAFKA_SECURITY_PROTOCOL='TLS'", "PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"],
        ),
        (
            sasl_env(KAFKA_SASL_MECHANISM=""),
            ["KAFKA_SASL_MECHANISM is missing", "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"],
        ),
        (
            sasl_env(KAFKA_SASL_MECHANISM="GSSAPI"),
            ["KAFKA_SASL_MECHANISM='GSSAPI' is not supported", "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"],
        ),
        (
            sasl_env(KAFKA_SASL_USERNAME=""),
            ["KAFKA_SASL_USERNAME is missing", "KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT"],
        ),
        (
            sasl_env(KAFKA_SASL_PASSWORD=""),
            ["KAFKA_SASL_PASSWORD is missing", "'flyte'"],
        ),
        (
            sasl_env(KAFKA_SECURITY_PROTOCOL="PLAINTEXT"),
            ["KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD set", "does not use SASL"],
        ),
        (
            sasl_env(KAFKA_SECURITY_PROTOCOL="SSL"),
            ["KAFKA_SASL_MECHANISM", "KAFKA_SECURITY_PROTOCOL=SSL does not use SASL"],
        ),
        (
            sasl_env(KAFKA_SSL_CAFILE="/etc/ssl/ca.pem"),
            ["KAFKA_SSL_CAFILE set", "KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT does not use TLS", "SSL or SASL_SSL"],
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"},
            ["KAFKA_SSL_CAFILE='/nonexistent/ca.pem'", "file not found"],
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CHECK_HOSTNAME": "maybe"},
            ["KAFKA_SSL_CHECK_HOSTNAME='maybe' is not a boolean", "true or false"],
        ),
    ],
)
def test_invalid_settings_name_the_variable(env: dict[str, str], expected_parts: list[str]) -> None:
    with pytest.raises(ConfigError) as raised:
        SecuritySettings.from_env(env)

    message = str(raised.value)
    for part in expected_parts:
        assert part in message
    assert SASL_PASSWORD not in message


def test_certificate_without_key_is_invalid(certificate: CertificateFiles) -> None:
    with pytest.raises(ConfigError, match="KAFKA_SSL_CERTFILE is set but KAFKA_SSL_KEYFILE is missing"):
        SecuritySettings(protocol="SSL", ssl_certfile=str(certificate.cert))


def test_key_without_certificate_is_invalid(certificate: CertificateFiles) -> None:
    with pytest.raises(ConfigError, match="KAFKA_SSL_KEYFILE is set but KAFKA_SSL_CERTFILE is missing"):
        SecuritySettings(protocol="SSL", ssl_keyfile=str(certificate.key))


def test_key_password_without_key_is_invalid() -> None:
    with pytest.raises(ConfigError) as raised:
        SecuritySettings(protocol="SSL", ssl_key_password=KEY_PASSWORD)

    assert "KAFKA_SSL_KEY_PASSWORD is set but KAFKA_SSL_KEYFILE is missing" in str(raised.value)
    assert KEY_PASSWORD not in str(raised.value)


def test_missing_key_file_is_invalid(certificate: CertificateFiles, tmp_path: Path) -> None:
    missing = tmp_path / "missing-key.pem"

    with pytest.raises(ConfigError, match="KAFKA_SSL_KEYFILE=.*missing-key.pem.*file not found"):
        SecuritySettings(protocol="SSL", ssl_certfile=str(certificate.cert), ssl_keyfile=str(missing))


def test_settings_are_frozen() -> None:
    security = SecuritySettings.from_env(sasl_env())

    with pytest.raises(dataclasses.FrozenInstanceError):
        security.sasl_password = "changed"  # type: ignore[misc]


# Secrets


def test_repr_omits_passwords(certificate: CertificateFiles) -> None:
    security = SecuritySettings(
        protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="flyte",
        sasl_password=SASL_PASSWORD,
        ssl_cafile=str(certificate.cert),
        ssl_certfile=str(certificate.cert),
        ssl_keyfile=str(certificate.encrypted_key),
        ssl_key_password=KEY_PASSWORD,
    )

    for text in (repr(security), str(security), f"{security}"):
        assert SASL_PASSWORD not in text
        assert KEY_PASSWORD not in text
        assert "flyte" in text


def test_faust_credentials_repr_omits_password() -> None:
    credentials = faust_broker_credentials(SecuritySettings.from_env(sasl_env()))

    assert SASL_PASSWORD not in repr(credentials)


# confluent-kafka settings


def test_confluent_settings_plaintext() -> None:
    assert confluent_settings(SecuritySettings()) == {"security.protocol": "PLAINTEXT"}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_confluent_settings_sasl_plaintext(mechanism: str) -> None:
    security = SecuritySettings.from_env(sasl_env(KAFKA_SASL_MECHANISM=mechanism))

    assert confluent_settings(security) == {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": "flyte",
        "sasl.password": SASL_PASSWORD,
    }


def test_confluent_settings_sasl_ssl(certificate: CertificateFiles) -> None:
    security = SecuritySettings.from_env(
        sasl_env(
            KAFKA_SECURITY_PROTOCOL="SASL_SSL",
            KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
            KAFKA_SSL_CAFILE=str(certificate.cert),
            KAFKA_SSL_CERTFILE=str(certificate.cert),
            KAFKA_SSL_KEYFILE=str(certificate.encrypted_key),
            KAFKA_SSL_KEY_PASSWORD=KEY_PASSWORD,
        )
    )

    assert confluent_settings(security) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "flyte",
        "sasl.password": SASL_PASSWORD,
        "ssl.ca.location": str(certificate.cert),
        "ssl.certificate.location": str(certificate.cert),
        "ssl.key.location": str(certificate.encrypted_key),
        "ssl.key.password": KEY_PASSWORD,
        "ssl.endpoint.identification.algorithm": "https",
    }


def test_confluent_settings_ssl_without_files() -> None:
    security = SecuritySettings.from_env({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CHECK_HOSTNAME": "false"})

    assert confluent_settings(security) == {
        "security.protocol": "SSL",
        "ssl.endpoint.identification.algorithm": "none",
    }


def test_confluent_settings_accepted_by_librdkafka(certificate: CertificateFiles) -> None:
    from confluent_kafka import Producer

    security = SecuritySettings(
        protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="flyte",
        sasl_password=SASL_PASSWORD,
        ssl_cafile=str(certificate.cert),
        ssl_certfile=str(certificate.cert),
        ssl_keyfile=str(certificate.encrypted_key),
        ssl_key_password=KEY_PASSWORD,
    )

    # librdkafka checks the properties and loads the PEM files when the client
    # is created, and raises KafkaException on a bad file or key password. No
    # broker has to run at the bootstrap address.
    producer = Producer({"bootstrap.servers": "127.0.0.1:9", **confluent_settings(security), "log_level": 0})
    assert producer.flush(0) == 0


# faust credentials


def test_faust_credentials_plaintext_is_none() -> None:
    assert faust_broker_credentials(SecuritySettings()) is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_faust_credentials_sasl_reach_aiokafka(mechanism: str) -> None:
    credentials = faust_broker_credentials(SecuritySettings.from_env(sasl_env(KAFKA_SASL_MECHANISM=mechanism)))

    assert isinstance(credentials, faust.SASLCredentials)
    # What faust-streaming passes to every AIOKafkaConsumer and AIOKafkaProducer.
    assert credentials_to_aiokafka_auth(credentials) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "flyte",
        "sasl_plain_password": SASL_PASSWORD,
        "ssl_context": None,
    }


def test_faust_credentials_sasl_ssl(certificate: CertificateFiles) -> None:
    security = SecuritySettings.from_env(
        sasl_env(
            KAFKA_SECURITY_PROTOCOL="SASL_SSL",
            KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
            KAFKA_SSL_CAFILE=str(certificate.cert),
        )
    )

    auth = credentials_to_aiokafka_auth(faust_broker_credentials(security))

    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert isinstance(auth["ssl_context"], ssl.SSLContext)
    assert auth["ssl_context"].verify_mode == ssl.CERT_REQUIRED


def test_faust_credentials_ssl(certificate: CertificateFiles) -> None:
    security = SecuritySettings(protocol="SSL", ssl_cafile=str(certificate.cert))

    credentials = faust_broker_credentials(security)

    assert isinstance(credentials, faust.SSLCredentials)
    auth = credentials_to_aiokafka_auth(credentials)
    assert auth["security_protocol"] == "SSL"
    assert auth["ssl_context"] is credentials.context


def test_faust_app_accepts_credentials() -> None:
    credentials = faust_broker_credentials(SecuritySettings.from_env(sasl_env(KAFKA_SASL_MECHANISM="SCRAM-SHA-256")))

    app = faust.App("test-security-credentials", broker="kafka://127.0.0.1:9", broker_credentials=credentials)

    assert app.conf.broker_credentials is credentials


# to_env


def test_to_env_sets_every_variable() -> None:
    env = to_env(SecuritySettings())

    assert set(env) == ALL_VARIABLES
    assert env["KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"
    assert env["KAFKA_SASL_PASSWORD"] == ""
    assert env["KAFKA_SSL_CHECK_HOSTNAME"] == "true"


def test_to_env_round_trips(certificate: CertificateFiles) -> None:
    cases = [
        SecuritySettings(),
        SecuritySettings.from_env(sasl_env(KAFKA_SASL_MECHANISM="SCRAM-SHA-256")),
        SecuritySettings(protocol="SSL", ssl_check_hostname=False),
        SecuritySettings(
            protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username="flyte",
            sasl_password=SASL_PASSWORD,
            ssl_cafile=str(certificate.cert),
            ssl_certfile=str(certificate.cert),
            ssl_keyfile=str(certificate.encrypted_key),
            ssl_key_password=KEY_PASSWORD,
        ),
    ]
    for security in cases:
        assert SecuritySettings.from_env(to_env(security)) == security


def test_to_env_overrides_inherited_variables() -> None:
    inherited = sasl_env()

    merged = {**inherited, **to_env(SecuritySettings())}

    assert SecuritySettings.from_env(merged) == SecuritySettings()


# TLS context


def test_ssl_context_trusts_ca_file(certificate: CertificateFiles) -> None:
    context = ssl_context(SecuritySettings(protocol="SSL", ssl_cafile=str(certificate.cert)))

    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    subjects = [dict(entry[0] for entry in ca["subject"]) for ca in context.get_ca_certs()]
    assert subjects == [{"commonName": "localhost"}]
    handshake(context, certificate, server_hostname="localhost")


def test_ssl_context_rejects_other_ca(certificate: CertificateFiles, other_certificate: CertificateFiles) -> None:
    context = ssl_context(SecuritySettings(protocol="SSL", ssl_cafile=str(certificate.cert)))

    with pytest.raises(ssl.SSLCertVerificationError, match="self.signed certificate|unable to get local issuer"):
        handshake(context, other_certificate, server_hostname="localhost")


def test_ssl_context_checks_hostname(certificate: CertificateFiles) -> None:
    context = ssl_context(SecuritySettings(protocol="SSL", ssl_cafile=str(certificate.cert)))

    # The connection goes to 127.0.0.1, and the name is only compared with the certificate.
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        handshake(context, certificate, server_hostname="broker.invalid")


def test_ssl_context_without_hostname_check(certificate: CertificateFiles, other_certificate: CertificateFiles) -> None:
    context = ssl_context(SecuritySettings(protocol="SSL", ssl_cafile=str(certificate.cert), ssl_check_hostname=False))

    assert context.check_hostname is False
    assert context.verify_mode == ssl.CERT_REQUIRED
    handshake(context, certificate, server_hostname="broker.invalid")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(context, other_certificate, server_hostname="broker.invalid")


def test_ssl_context_loads_client_key(certificate: CertificateFiles) -> None:
    plain = SecuritySettings(protocol="SSL", ssl_certfile=str(certificate.cert), ssl_keyfile=str(certificate.key))
    encrypted = SecuritySettings(
        protocol="SSL",
        ssl_certfile=str(certificate.cert),
        ssl_keyfile=str(certificate.encrypted_key),
        ssl_key_password=KEY_PASSWORD,
    )

    assert isinstance(ssl_context(plain), ssl.SSLContext)
    assert isinstance(ssl_context(encrypted), ssl.SSLContext)


def test_ssl_context_wrong_key_password(certificate: CertificateFiles) -> None:
    wrong_password = "wrong-key-pass-31d0"
    security = SecuritySettings(
        protocol="SSL",
        ssl_certfile=str(certificate.cert),
        ssl_keyfile=str(certificate.encrypted_key),
        ssl_key_password=wrong_password,
    )

    with pytest.raises(ConfigError) as raised:
        ssl_context(security)

    message = str(raised.value)
    assert "KAFKA_SSL_KEYFILE" in message
    assert "KAFKA_SSL_KEY_PASSWORD" in message
    assert wrong_password not in message


def test_ssl_context_rejects_non_pem_ca_file(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")

    with pytest.raises(ConfigError, match="KAFKA_SSL_CAFILE=.*failed to load CA certificates"):
        ssl_context(SecuritySettings(protocol="SSL", ssl_cafile=str(not_pem)))
