"""TLS on the client side: the one place where SSL contexts are made and TLS failures named.

Every transport and the admin API's client verify the broker the same way
(:func:`client_context`): its certificate must chain to the CA bundle of
``DEMESSAGING_TLS_TRUST_CERTS`` (the system's bundle if unset) and name the host of the URL
(host names and IP addresses alike). ``DEMESSAGING_TLS_INSECURE_SKIP_HOSTNAME_CHECK`` turns the
host name check off, and a WARNING is logged each time a context is made with it: any
certificate the CA ever signed is then taken, for any host. A client certificate
(``DEMESSAGING_TLS_CERTIFICATE`` and ``DEMESSAGING_TLS_KEY``) is loaded into the context.

:func:`failure` turns an :class:`ssl.SSLError` into one line that names the URL, the reason
and the setting to check.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
from urllib.parse import urlsplit

from ..errors import AuthenticationError, ConfigurationError, TransportError
from .base import TransportOptions

__all__ = [
    "INSECURE_SETTING",
    "check_files",
    "client_context",
    "credentials",
    "failure",
    "handshake_failure",
    "handshakes",
    "hostname_checked",
]

log = logging.getLogger("demessaging.transport.tls")

#: The setting that turns host name verification off (``TransportOptions``'s
#: ``tls_insecure_skip_hostname_check``).
INSECURE_SETTING = "DEMESSAGING_TLS_INSECURE_SKIP_HOSTNAME_CHECK"
TRUST_SETTING = "DEMESSAGING_TLS_TRUST_CERTS"
CERT_SETTING = "DEMESSAGING_TLS_CERTIFICATE"
KEY_SETTING = "DEMESSAGING_TLS_KEY"


def _file(path: str, what: str, setting: str) -> None:
    if not os.path.isfile(path):
        raise ConfigurationError(f"{what} {path} does not exist or is not a file; check {setting}")
    if not os.access(path, os.R_OK):
        raise ConfigurationError(f"{what} {path} cannot be read; check {setting}")


def hostname_checked(options: TransportOptions, url: str) -> bool:
    """Whether host names are verified for ``url``; warns if they are not."""
    if not options.tls_insecure_skip_hostname_check:
        return True
    log.warning(
        "TLS host name verification is OFF for %s (%s): any certificate the CA signed is "
        "taken, for any host; a man in the middle can read the traffic and the credentials",
        url,
        INSECURE_SETTING,
    )
    return False


def check_files(options: TransportOptions) -> None:
    """Raise :class:`ConfigurationError` naming the path and the setting of a missing file."""
    if options.tls_trust_certs:
        _file(options.tls_trust_certs, "the CA bundle", TRUST_SETTING)
    if options.tls_key and not options.tls_certificate:
        raise ConfigurationError(f"{KEY_SETTING} is set without {CERT_SETTING}")
    if options.tls_certificate:
        _file(options.tls_certificate, "the client certificate", CERT_SETTING)
        if not options.tls_key:
            raise ConfigurationError(
                f"{CERT_SETTING} is set without {KEY_SETTING} (the certificate's private key)"
            )
        _file(options.tls_key, "the client key", KEY_SETTING)


def client_context(options: TransportOptions, url: str) -> ssl.SSLContext:
    """An SSL context that verifies the broker at ``url`` as ``options`` say.

    Raises
    ------
    ConfigurationError
        If a file is missing or unreadable, the CA bundle holds no certificate, or the key
        does not match the client certificate (paths and settings named).
    """
    check_files(options)
    try:
        context = ssl.create_default_context(cafile=options.tls_trust_certs or None)
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigurationError(
            f"the CA bundle {options.tls_trust_certs} holds no PEM certificate ({exc}); check "
            f"{TRUST_SETTING}"
        ) from None
    if options.tls_certificate:
        try:
            context.load_cert_chain(options.tls_certificate, options.tls_key)
        except ssl.SSLError as exc:
            mismatch = "KEY_VALUES_MISMATCH" in str(exc) or "mismatch" in str(exc).lower()
            what = "does not match" if mismatch else "cannot be used with"
            raise ConfigurationError(
                f"the client key {options.tls_key} {what} the client certificate "
                f"{options.tls_certificate} ({exc.reason or exc}); check {CERT_SETTING} and "
                f"{KEY_SETTING} (PEM, an unencrypted key)"
            ) from None
    if not hostname_checked(options, url):
        context.check_hostname = False
    return context


def handshakes(url: str, timeout: float = 2.0) -> bool:
    """Whether a TLS handshake with ``url``'s host and port completes (nothing verified)."""
    parts = urlsplit(url)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        address = (parts.hostname or "127.0.0.1", parts.port or 443)
        with socket.create_connection(address, timeout) as raw, context.wrap_socket(raw):
            return True  # the handshake is made when the socket is wrapped
    except (OSError, ValueError):
        return False


def credentials(options: TransportOptions) -> str:
    """The settings to check when a broker refuses the credentials of ``options``."""
    if options.tls_certificate and not options.token:
        return f"{CERT_SETTING} and {KEY_SETTING} (a certificate of a CA the broker trusts)"
    return "DEMESSAGING_TOKEN or DEMESSAGING_HEADERS"


def failure(
    url: str, exc: BaseException, options: TransportOptions, *, refused: bool = False
) -> TransportError:
    """One line for a failed TLS handshake with ``url`` (to raise ``from None``).

    An alert the broker sent about our certificate (or its absence) is an
    :class:`AuthenticationError`; ``refused`` says the broker closed the connection after the
    handshake, because of our certificate or for want of one.
    """
    text = str(exc)
    verify = getattr(exc, "verify_message", "") or ""
    code = getattr(exc, "verify_code", 0)
    ca = options.tls_trust_certs or "the system's CA bundle"
    if isinstance(exc, ssl.SSLCertVerificationError) and (
        code == 62 or "hostname" in verify.lower() or "ip address mismatch" in verify.lower()
    ):
        return TransportError(
            f"TLS to {url} failed: the broker's certificate is not valid for this host name "
            f"({verify}); connect by a name the certificate holds (or, unsafe, set "
            f"{INSECURE_SETTING}=true)"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TransportError(
            f"TLS to {url} failed: the broker's certificate is not trusted ({verify or text}) "
            f"by {ca}; check {TRUST_SETTING}"
        )
    reason = getattr(exc, "reason", "") or text
    if (refused or "ALERT" in text.upper()) and options.tls_certificate:
        # Pulsar's broker answers an untrusted client certificate with an internal error
        return AuthenticationError(
            f"TLS to {url} failed: the broker refused the client certificate "
            f"{options.tls_certificate} ({reason}); is it signed by a CA the broker trusts? "
            f"check {CERT_SETTING} and {KEY_SETTING}"
        )
    wanted = ("CERTIFICATE_REQUIRED", "HANDSHAKE_FAILURE", "BAD_CERTIFICATE")
    if any(mark in text.upper() for mark in wanted):
        return AuthenticationError(
            f"TLS to {url} failed: the broker wants a client certificate ({reason}); set "
            f"{CERT_SETTING} and {KEY_SETTING}"
        )
    if refused:
        return AuthenticationError(
            f"TLS to {url} failed: the broker closed the connection after the handshake "
            f"({reason}); does it want a client certificate? set {CERT_SETTING} and "
            f"{KEY_SETTING}"
        )
    return TransportError(
        f"TLS to {url} failed ({reason}): is that port the broker's "
        "TLS port? pulsar+ssl:// and wss:// need its TLS ports (6651, 8443), pulsar:// and "
        "ws:// its plain ones (6650, 8080)"
    )


def handshake_failure(
    url: str, exc: BaseException, options: TransportOptions, what: str
) -> TransportError:
    """One line for a WebSocket handshake with ``url`` that failed in TLS or got no HTTP."""
    cause = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
    if isinstance(cause, ssl.SSLError):
        return failure(url, cause, options)
    closed = isinstance(cause, (EOFError, ConnectionError))
    if url.startswith("wss://") and closed:
        # closed after the handshake: our certificate was refused, or one is wanted
        return failure(url, cause or exc, options, refused=True)
    hint = "; if that is a TLS port, use wss://" if url.startswith("ws://") else ""
    return TransportError(f"{what} failed: {url} did not answer HTTP ({exc}){hint}")
