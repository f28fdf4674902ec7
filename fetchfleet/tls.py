"""The lab's one CA: the PagerDuty stand-in's server certificate and every host's certificate.

A CA made at run time, kept under the lab's state directory on the control machine (never in the
repository): `ca.pem`, its key `ca.key` (mode 0600, root's) and the stand-in's `server.pem`. Each
lab host gets a certificate of its own (`hosts/NAME.pem`, `hosts/NAME.key`), subject `CN=NAME`,
valid for its name, FQDN and address, for both ends of TLS: roles/logs' journal-upload presents it
to the log server, and the log server serves with its own. Certificates are renewed when they are
near their end or the CA changed; the next converge ships the new ones. Real inventories bring
certificates from their own CA (roles/logs' logs_tls_* files).
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 365
CERT_DAYS = 90
RENEW_DAYS = 14


@dataclass(frozen=True)
class Tls:
    ca_cert: Path
    cert: Path
    key: Path


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _alt_names(names: Iterable[str]) -> list[x509.GeneralName]:
    found: list[x509.GeneralName] = []
    for name in names:
        try:
            found.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            found.append(x509.DNSName(name))
    return found


def _sign(
    subject: str,
    names: Iterable[str],
    usages: list[x509.ObjectIdentifier],
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(min(now + datetime.timedelta(days=CERT_DAYS), ca.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(_alt_names(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, True, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def make_ca(directory: Path, names: Iterable[str] = ("127.0.0.1", "localhost")) -> Tls:
    """A new CA in `directory` (its key kept beside it, 0600) and a server certificate it signed
    for `names` (IP addresses or DNS names): the PagerDuty stand-in serves with that one."""
    directory.mkdir(parents=True, exist_ok=True)
    now = _now()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fetchfleet lab CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    tls = _server_tls(directory)
    _write_key(directory / "ca.key", ca_key)
    tls.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert, key = _sign("pagerduty stand-in", names, [ExtendedKeyUsageOID.SERVER_AUTH], ca, ca_key)
    tls.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(tls.key, key)
    return tls


def _server_tls(directory: Path) -> Tls:
    return Tls(directory / "ca.pem", directory / "server.pem", directory / "server.key")


def _fresh(path: Path, ca: x509.Certificate | None = None) -> bool:
    """The certificate exists, is valid for RENEW_DAYS more, and (given `ca`) was signed by it."""
    if not path.is_file():
        return False
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    if cert.not_valid_after_utc < _now() + datetime.timedelta(days=RENEW_DAYS):
        return False
    return ca is None or (cert.issuer == ca.subject and _signed_by(cert, ca))


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def ensure_ca(directory: Path, names: Iterable[str]) -> Tls:
    """The CA and the stand-in's certificate in `directory`, made the first time (and again when
    the CA nears its end, or was made before its key was kept): the lab converges the pager and
    the hosts to trust this CA, and every stand-in serves the same certificate."""
    tls = _server_tls(directory)
    ca_key = directory / "ca.key"
    if all(p.exists() for p in (tls.ca_cert, tls.cert, tls.key, ca_key)) and _fresh(tls.ca_cert):
        return tls
    return make_ca(directory, names)


def ensure_host_cert(directory: Path, name: str, names: Iterable[str]) -> Tls:
    """Host `name`'s certificate and key (`directory/hosts/NAME.pem|.key`), signed by the CA in
    `directory`, for TLS client and server use; made or renewed only when needed."""
    ca_cert = directory / "ca.pem"
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    tls = Tls(ca_cert, directory / "hosts" / f"{name}.pem", directory / "hosts" / f"{name}.key")
    if tls.key.is_file() and _fresh(tls.cert, ca):
        return tls
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    cert, key = _sign(name, [name, *names], usages, ca, ca_key)
    _write_key(tls.key, key)
    tls.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return tls
