"""Kafka security settings (SASL and TLS) for every client of the processor.

One SecuritySettings value, read from the environment, configures both client
families: confluent-kafka (librdkafka properties from confluent_settings) and
faust's aiokafka transport (credentials from faust_broker_credentials).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import faust

PROTOCOL_ENV = "KAFKA_SECURITY_PROTOCOL"
SASL_MECHANISM_ENV = "KAFKA_SASL_MECHANISM"
SASL_USERNAME_ENV = "KAFKA_SASL_USERNAME"
SASL_PASSWORD_ENV = "KAFKA_SASL_PASSWORD"
SSL_CAFILE_ENV = "KAFKA_SSL_CAFILE"
SSL_CERTFILE_ENV = "KAFKA_SSL_CERTFILE"
SSL_KEYFILE_ENV = "KAFKA_SSL_KEYFILE"
SSL_KEY_PASSWORD_ENV = "KAFKA_SSL_KEY_PASSWORD"
SSL_CHECK_HOSTNAME_ENV = "KAFKA_SSL_CHECK_HOSTNAME"

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
SSL_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

_TRUE_VALUES = frozenset({"1", "true", "yes", "on"})
_FALSE_VALUES = frozenset({"0", "false", "no", "off"})


def _config_error(message: str) -> Exception:
    # Imported here, not at the top, because processor.config may import this
    # module to hold SecuritySettings in Settings. A top-level import would
    # then fail in whichever of the two modules is imported second.
    from processor.config import ConfigError

    return ConfigError(message)


@dataclass(frozen=True)
class SecuritySettings:
    """Protocol, SASL login and TLS files that every Kafka client uses.

    Construction validates the values and raises ConfigError, so an instance
    is always usable. The passwords are left out of repr() and of every
    error message.
    """

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    # PEM files. Without a CA file, both clients trust the system's CA store.
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_key_password: str | None = field(default=None, repr=False)
    # Whether the broker certificate must name the host the client connects
    # to. The certificate chain is verified either way.
    ssl_check_hostname: bool = True

    def __post_init__(self) -> None:
        self.validate()

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in SASL_PROTOCOLS

    @property
    def uses_ssl(self) -> bool:
        return self.protocol in SSL_PROTOCOLS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "SecuritySettings":
        """Read the KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_* and KAFKA_SSL_* variables.

        An empty variable counts as unset. ``environ`` defaults to os.environ.
        """
        env = os.environ if environ is None else environ

        def text(name: str) -> str | None:
            value = env.get(name, "")
            return value if value.strip() else None

        protocol = (text(PROTOCOL_ENV) or "PLAINTEXT").strip().upper()
        mechanism = text(SASL_MECHANISM_ENV)
        return cls(
            protocol=protocol,
            sasl_mechanism=mechanism.strip().upper() if mechanism else None,
            sasl_username=text(SASL_USERNAME_ENV),
            sasl_password=text(SASL_PASSWORD_ENV),
            ssl_cafile=text(SSL_CAFILE_ENV),
            ssl_certfile=text(SSL_CERTFILE_ENV),
            ssl_keyfile=text(SSL_KEYFILE_ENV),
            ssl_key_password=text(SSL_KEY_PASSWORD_ENV),
            ssl_check_hostname=_parse_bool(SSL_CHECK_HOSTNAME_ENV, text(SSL_CHECK_HOSTNAME_ENV), default=True),
        )

    def validate(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise _config_error(f"{PROTOCOL_ENV}={self.protocol!r} is not supported: use one of {', '.join(PROTOCOLS)}")
        self._validate_sasl()
        self._validate_ssl()

    def _validate_sasl(self) -> None:
        if not self.uses_sasl:
            present = _names_of_set_values(
                {
                    SASL_MECHANISM_ENV: self.sasl_mechanism,
                    SASL_USERNAME_ENV: self.sasl_username,
                    SASL_PASSWORD_ENV: self.sasl_password,
                }
            )
            if present:
                raise _config_error(
                    f"{', '.join(present)} set, but {PROTOCOL_ENV}={self.protocol} does not use SASL: "
                    f"set {PROTOCOL_ENV} to SASL_PLAINTEXT or SASL_SSL, or unset the KAFKA_SASL_* variables"
                )
            return

        if self.sasl_mechanism is None:
            raise _config_error(
                f"{SASL_MECHANISM_ENV} is missing, but {PROTOCOL_ENV}={self.protocol} needs it: "
                f"set it to one of {', '.join(SASL_MECHANISMS)}"
            )
        if self.sasl_mechanism not in SASL_MECHANISMS:
            raise _config_error(
                f"{SASL_MECHANISM_ENV}={self.sasl_mechanism!r} is not supported: use one of {', '.join(SASL_MECHANISMS)}"
            )
        if self.sasl_username is None:
            raise _config_error(
                f"{SASL_USERNAME_ENV} is missing, but {PROTOCOL_ENV}={self.protocol} needs it: set it to the SASL user name"
            )
        if self.sasl_password is None:
            raise _config_error(
                f"{SASL_PASSWORD_ENV} is missing, but {PROTOCOL_ENV}={self.protocol} needs it: "
                f"set it to the password of SASL user {self.sasl_username!r}"
            )

    def _validate_ssl(self) -> None:
        files = {
            SSL_CAFILE_ENV: self.ssl_cafile,
            SSL_CERTFILE_ENV: self.ssl_certfile,
            SSL_KEYFILE_ENV: self.ssl_keyfile,
        }
        if not self.uses_ssl:
            present = _names_of_set_values({**files, SSL_KEY_PASSWORD_ENV: self.ssl_key_password})
            if present:
                raise _config_error(
                    f"{', '.join(present)} set, but {PROTOCOL_ENV}={self.protocol} does not use TLS: "
                    f"set {PROTOCOL_ENV} to SSL or SASL_SSL, or unset the KAFKA_SSL_* variables"
                )
            return

        for name, path in files.items():
            if path is not None and not Path(path).is_file():
                raise _config_error(f"{name}={path!r}: file not found: set it to the path of a PEM file")
        if self.ssl_certfile is not None and self.ssl_keyfile is None:
            raise _config_error(
                f"{SSL_CERTFILE_ENV} is set but {SSL_KEYFILE_ENV} is missing: "
                "set it to the PEM file of the client certificate's private key"
            )
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise _config_error(
                f"{SSL_KEYFILE_ENV} is set but {SSL_CERTFILE_ENV} is missing: "
                "set it to the PEM file of the client certificate"
            )
        if self.ssl_key_password is not None and self.ssl_keyfile is None:
            raise _config_error(
                f"{SSL_KEY_PASSWORD_ENV} is set but {SSL_KEYFILE_ENV} is missing: "
                "set it to the PEM file of the encrypted private key"
            )


def _parse_bool(name: str, text: str | None, default: bool) -> bool:
    if text is None:
        return default
    lowered = text.strip().lower()
    if lowered in _TRUE_VALUES:
        return True
    if lowered in _FALSE_VALUES:
        return False
    raise _config_error(f"{name}={text!r} is not a boolean: use true or false")


def _names_of_set_values(values: Mapping[str, str | None]) -> list[str]:
    return [name for name, value in values.items() if value is not None]


def confluent_settings(security: SecuritySettings) -> dict[str, str]:
    """Return the librdkafka properties of ``security`` for confluent-kafka clients.

    The result contains the SASL password and the key password, so do not log it.
    """
    properties = {"security.protocol": security.protocol}
    if security.uses_sasl:
        properties["sasl.mechanism"] = security.sasl_mechanism
        properties["sasl.username"] = security.sasl_username
        properties["sasl.password"] = security.sasl_password
    if security.uses_ssl:
        # Without ssl.ca.location, librdkafka uses the system's CA store. Its
        # ssl.ca.location documentation states that a build with static OpenSSL,
        # as in the confluent-kafka 2.16 Linux wheels, probes standard paths.
        if security.ssl_cafile is not None:
            properties["ssl.ca.location"] = security.ssl_cafile
        if security.ssl_certfile is not None:
            properties["ssl.certificate.location"] = security.ssl_certfile
            properties["ssl.key.location"] = security.ssl_keyfile
        if security.ssl_key_password is not None:
            properties["ssl.key.password"] = security.ssl_key_password
        properties["ssl.endpoint.identification.algorithm"] = "https" if security.ssl_check_hostname else "none"
    return properties


def ssl_context(security: SecuritySettings) -> ssl.SSLContext:
    """Build the client TLS context from the CA, certificate and key files.

    Raises ConfigError when a file cannot be loaded, for example a file that
    is not PEM or a wrong KAFKA_SSL_KEY_PASSWORD.
    """
    try:
        # With cafile=None, create_default_context loads the system's CA store.
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=security.ssl_cafile)
    except OSError as error:
        raise _config_error(
            f"{SSL_CAFILE_ENV}={security.ssl_cafile!r}: failed to load CA certificates ({error}): "
            "set it to a PEM file of CA certificates"
        ) from None

    if security.ssl_certfile is not None:
        try:
            context.load_cert_chain(
                security.ssl_certfile,
                keyfile=security.ssl_keyfile,
                password=security.ssl_key_password,
            )
        except OSError as error:
            raise _config_error(
                f"{SSL_CERTFILE_ENV}={security.ssl_certfile!r} and {SSL_KEYFILE_ENV}={security.ssl_keyfile!r}: "
                f"failed to load the client certificate and key ({error}): check that they are "
                f"PEM files of one key pair and that {SSL_KEY_PASSWORD_ENV} is the key's password"
            ) from None

    # verify_mode stays CERT_REQUIRED, so the chain is verified either way.
    context.check_hostname = security.ssl_check_hostname
    return context


def faust_broker_credentials(security: SecuritySettings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """Return the value of faust.App(broker_credentials=...) for ``security``.

    faust-streaming 0.15 hands these credentials to every aiokafka consumer and
    producer it creates, and its topic creation uses the consumer's client.
    Returns None for PLAINTEXT.
    """
    if security.protocol == "PLAINTEXT":
        return None
    if security.protocol == "SSL":
        return faust.SSLCredentials(ssl_context(security))

    # SASLCredentials switches its protocol to SASL_SSL when it gets a context.
    context = ssl_context(security) if security.uses_ssl else None
    return faust.SASLCredentials(
        username=security.sasl_username,
        password=security.sasl_password,
        mechanism=security.sasl_mechanism,
        ssl_context=context,
    )


def to_env(security: SecuritySettings) -> dict[str, str]:
    """Return the variables that make ``SecuritySettings.from_env`` rebuild ``security``.

    Every variable is present, unset values as empty strings, so the result
    overrides inherited values when it is merged into a child's environment.
    The result contains the passwords.
    """

    def text(value: str | None) -> str:
        return "" if value is None else value

    return {
        PROTOCOL_ENV: security.protocol,
        SASL_MECHANISM_ENV: text(security.sasl_mechanism),
        SASL_USERNAME_ENV: text(security.sasl_username),
        SASL_PASSWORD_ENV: text(security.sasl_password),
        SSL_CAFILE_ENV: text(security.ssl_cafile),
        SSL_CERTFILE_ENV: text(security.ssl_certfile),
        SSL_KEYFILE_ENV: text(security.ssl_keyfile),
        SSL_KEY_PASSWORD_ENV: text(security.ssl_key_password),
        SSL_CHECK_HOSTNAME_ENV: "true" if security.ssl_check_hostname else "false",
    }
