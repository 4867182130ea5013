"""A throwaway certificate authority for the lab: server certificates for the
simulated hosts (and Squid's HTTPS port), client certificates for WinRM
certificate authentication."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import pathlib
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

log = logging.getLogger(__name__)

# szOID_NT_PRINCIPAL_NAME: the otherName Windows reads the UPN from when mapping a client certificate.
_UPN_OID = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
_VALIDITY = datetime.timedelta(days=30)


def _new_key() -> rsa.RSAPrivateKey:
    # RSA, not EC: CredSSP's pubKeyAuth (MS-CSSP) is defined over an RSA PKCS#1 public key.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: pathlib.Path, key: rsa.RSAPrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Created 0600 from the start, so the key is never readable by others even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.chmod(path, 0o600)


def _der_utf8_string(text: str) -> bytes:
    """DER UTF8String wrapped in the [0] EXPLICIT tag otherName values carry."""
    raw = text.encode("utf-8")

    def tlv(tag: int, value: bytes) -> bytes:
        length = len(value)
        if length < 0x80:
            return bytes([tag, length]) + value
        size = (length.bit_length() + 7) // 8
        return bytes([tag, 0x80 | size]) + length.to_bytes(size, "big") + value

    return tlv(0xA0, tlv(0x0C, raw))


class LabCA:
    """A CA whose certificate and key live in one directory (key file mode 0600)."""

    def __init__(self, directory: pathlib.Path, key: rsa.RSAPrivateKey, cert: x509.Certificate) -> None:
        self.directory = directory
        self.cert_path = directory / "ca.pem"
        self.key_path = directory / "ca.key"
        self._key = key
        self._cert = cert
        self._lock = threading.Lock()
        self._serial_names: set[str] = set()

    @classmethod
    def create(cls, directory: pathlib.Path) -> LabCA:
        """Generate a new CA in `directory` (created if missing, mode 0700)."""
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        key = _new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pinned.winrm lab CA")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                    key_encipherment=False, data_encipherment=False, key_agreement=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        ca = cls(directory, key, cert)
        ca.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(ca.key_path, key)
        log.debug("lab CA created in %s", directory)
        return ca

    def _file_stem(self, kind: str, common_name: str) -> str:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in common_name) or "cert"
        with self._lock:
            stem, n = f"{kind}-{safe}", 1
            while stem in self._serial_names:
                n += 1
                stem = f"{kind}-{safe}-{n}"
            self._serial_names.add(stem)
        return stem

    def _builder(self, subject: x509.Name, key: rsa.RSAPrivateKey) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.timezone.utc)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._cert.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
        )

    def issue_server(
        self, common_name: str, dns_names: list[str], ip_addresses: list[str]
    ) -> tuple[pathlib.Path, pathlib.Path]:
        """Issue a TLS server certificate; returns (cert PEM path, key PEM path)."""
        key = _new_key()
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
        builder = self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), key)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return self._store("server", common_name, cert, key)

    def issue_client(self, common_name: str, upn: str) -> tuple[pathlib.Path, pathlib.Path, str]:
        """Issue a client certificate carrying `upn` as Windows expects for certificate
        mapping; returns (cert PEM path, key PEM path, sha1 thumbprint lower hex)."""
        key = _new_key()
        builder = self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), key)
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.OtherName(_UPN_OID, _der_utf8_string(upn))]), critical=False
        )
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        cert_path, key_path = self._store("client", common_name, cert, key)
        return cert_path, key_path, cert.fingerprint(hashes.SHA1()).hex()

    def _store(
        self, kind: str, common_name: str, cert: x509.Certificate, key: rsa.RSAPrivateKey
    ) -> tuple[pathlib.Path, pathlib.Path]:
        stem = self._file_stem(kind, common_name)
        cert_path = self.directory / f"{stem}.pem"
        key_path = self.directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_path, key)
        return cert_path, key_path
