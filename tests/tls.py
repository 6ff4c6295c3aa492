"""Throw-away certificates for TLS tests: a CA and a server certificate for 127.0.0.1 / localhost."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class ServerPki:
    """Files of a test PKI: the CA, the server's key and chain, and both in one PEM (Kafka's PEM keystore)."""

    ca: Path
    key: Path
    chain: Path
    keystore: Path


def make_server_pki(folder: Path, days: int = 1) -> ServerPki:
    """A CA and a server certificate (SAN localhost and 127.0.0.1) signed by it, written under ``folder``."""
    now = dt.datetime.now(dt.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "darkroom test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        # Clients verify the server's name (librdkafka: ssl.endpoint.identification.algorithm=https by default).
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    chain_pem = cert.public_bytes(pem) + ca.public_bytes(pem)
    pki = ServerPki(folder / "ca.pem", folder / "server.key", folder / "server-chain.pem", folder / "keystore.pem")
    pki.ca.write_bytes(ca.public_bytes(pem))
    pki.chain.write_bytes(chain_pem)
    for private, data in ((pki.key, key_pem), (pki.keystore, key_pem + chain_pem)):
        private.write_bytes(data)
        private.chmod(0o600)
    return pki
