"""Certificates for TLS tests, made with ``cryptography``: a private CA, servers, clients.

Everything is PEM; keys are unencrypted PKCS#8 (what Apache Pulsar's broker reads). A server
certificate names its host names and IP addresses in its subjectAltName; a client
certificate carries its role in its common name (Pulsar's ``AuthenticationProviderTls``
takes the CN as the role).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CA", "Pair"]

_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Pair:
    """A certificate and its key, as PEM files."""

    certificate: Path
    key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(
    folder: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Pair:
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{name}.cert.pem", folder / f"{name}.key-pk8.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return Pair(cert_path, key_path)


class CA:
    """A private certificate authority writing its files into ``folder``.

    Attributes
    ----------
    certificate
        The CA certificate (the trust bundle clients and the broker are given).
    """

    def __init__(self, folder: Path, name: str = "demessaging test CA") -> None:
        self.folder = Path(folder)
        self._key = _key()
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + 30 * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        self.certificate = _write(
            self.folder, name.replace(" ", "-"), self._cert, self._key
        ).certificate

    def _issue(
        self,
        name: str,
        common_name: str,
        usage: x509.ObjectIdentifier,
        alt_names: list[x509.GeneralName] | None = None,
    ) -> Pair:
        key = _key()
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + 30 * _DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        return _write(self.folder, name, builder.sign(self._key, hashes.SHA256()), key)

    def server(self, name: str, *hosts: str) -> Pair:
        """A server certificate for ``hosts`` (host names or IP addresses), as ``name``."""
        if not hosts:
            raise ValueError("a server certificate needs at least one host name or address")
        alt: list[x509.GeneralName] = []
        for host in hosts:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alt.append(x509.DNSName(host))
        return self._issue(name, hosts[0], ExtendedKeyUsageOID.SERVER_AUTH, alt)

    def client(self, role: str) -> Pair:
        """A client certificate whose common name is ``role``."""
        if not role:
            raise ValueError("a client certificate needs a role name")
        return self._issue(f"client-{role}", role, ExtendedKeyUsageOID.CLIENT_AUTH)
