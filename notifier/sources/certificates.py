"""Reading x509 certificates where they live: PEM, DER and PKCS#12 files, and TLS endpoints.

What the ``x509`` source (sources/x509.py) watches comes from here, as the certificates each
*place* (a file, or an endpoint ``host:port``) presents, each turned into a credential: id the
SHA-256 fingerprint, name the subject's CN (or first SAN). Errors are
:class:`CertificateReadError` with a short reason naming the place; the source decides that
one place failing is not the others' failure.

An endpoint's certificates are read, not trusted: the handshake verifies nothing, so an
expired or self-signed certificate is read like any other (warning about it is the point).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from notifier.core.model import CredentialKind, WatchedToken
from notifier.sources.endpoints import Endpoint

PKCS12_SUFFIXES = frozenset({".p12", ".pfx"})
_SMTP_READY = 220
_SMTP_OK = 250
_REPLY_LIMIT = 64 * 1024  # an SMTP greeting or EHLO answer longer than this is not a server's


class CertificateReadError(Exception):
    """A place's certificates could not be read (missing file, refused connection, bad data)."""


# --- files --------------------------------------------------------------------------------------


def read_file(path: Path, password: bytes | None, *, named: bool) -> list[x509.Certificate]:
    """The certificates in the file at *path*: every one of a PEM bundle, DER, or PKCS#12.

    *named*: the file was named itself (not found by a directory or a glob), so a file that
    holds no certificate is an error rather than a file to pass over (a key beside its
    certificate, a README).
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CertificateReadError(f"cannot read {path}: {error.strerror}") from None
    try:
        if b"-----BEGIN" in data:
            if b"CERTIFICATE-----" not in data:
                return _none(path, named=named)
            return x509.load_pem_x509_certificates(data)
        if path.suffix.lower() in PKCS12_SUFFIXES:
            return _pkcs12(path, data, password)
        try:
            return [x509.load_der_x509_certificate(data)]
        except ValueError:
            return _none(path, named=named)
    except ValueError as error:
        reason = str(error).split(". See ")[0] or "not a certificate"
        raise CertificateReadError(f"{path}: {reason}") from None


def _pkcs12(path: Path, data: bytes, password: bytes | None) -> list[x509.Certificate]:
    try:
        bundle = pkcs12.load_pkcs12(data, password)
    except ValueError:
        hint = "set pkcs12_password" if password is None else "wrong pkcs12_password?"
        raise CertificateReadError(f"{path}: cannot open the PKCS#12 file ({hint})") from None
    found = [] if bundle.cert is None else [bundle.cert.certificate]
    return found + [extra.certificate for extra in bundle.additional_certs]


def _none(path: Path, *, named: bool) -> list[x509.Certificate]:
    if named:
        raise CertificateReadError(f"{path}: holds no certificate (PEM, DER or PKCS#12)")
    return []


# --- endpoints ----------------------------------------------------------------------------------


def read_endpoint(endpoint: Endpoint, timeout: float) -> list[x509.Certificate]:
    """The chain *endpoint* presents in a TLS handshake, leaf first."""
    # Read, not trusted: nothing is verified, so expired and self-signed ones are read too.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    where = endpoint.place
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as raw:
            if endpoint.starttls == "smtp":
                _smtp_starttls(raw, where)
            server_name = endpoint.sni or (None if _is_address(endpoint.host) else endpoint.host)
            with context.wrap_socket(raw, server_hostname=server_name) as tls:
                presented = _presented(tls)
    except TimeoutError:
        raise CertificateReadError(f"{where}: timed out after {timeout:g}s") from None
    except ssl.SSLError as error:
        raise CertificateReadError(f"{where}: TLS handshake failed: {error.reason}") from None
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        raise CertificateReadError(f"{where}: {reason}") from None
    if not presented:
        raise CertificateReadError(f"{where}: presented no certificate")
    try:
        return [x509.load_der_x509_certificate(der) for der in presented]
    except ValueError:
        raise CertificateReadError(
            f"{where}: presented a certificate that cannot be read"
        ) from None


def _presented(tls: ssl.SSLSocket) -> list[bytes]:
    """The certificates the peer sent, DER, leaf first.

    ``get_unverified_chain`` is public from Python 3.13; 3.10 to 3.12 have it on the
    underlying ``_sslobj``. Where neither is there, the leaf alone is still read.
    """
    public = getattr(tls, "get_unverified_chain", None)
    if public is not None:
        return [bytes(der) for der in public()]
    private = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)
    if private is not None:
        chain = private() or []
        return [cert.public_bytes(ssl._ssl.ENCODING_DER) for cert in chain]  # type: ignore[attr-defined]  # noqa: SLF001 - see above
    leaf = tls.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def _smtp_starttls(raw: socket.socket, where: str) -> None:
    """Speak plain SMTP up to STARTTLS (RFC 3207), leaving the socket ready for the handshake."""
    reader = raw.makefile("rb", buffering=0)
    try:
        code, _ = _smtp_reply(reader, where)
        if code != _SMTP_READY:
            raise CertificateReadError(f"{where}: SMTP greeting {code}, not 220")
        raw.sendall(b"EHLO notifier.invalid\r\n")
        code, lines = _smtp_reply(reader, where)
        if code != _SMTP_OK:
            raise CertificateReadError(f"{where}: SMTP EHLO answered {code}")
        if not any(line.upper().startswith(b"STARTTLS") for line in lines):
            raise CertificateReadError(f"{where}: the SMTP server does not offer STARTTLS")
        raw.sendall(b"STARTTLS\r\n")
        code, _ = _smtp_reply(reader, where)
        if code != _SMTP_READY:
            raise CertificateReadError(f"{where}: SMTP STARTTLS answered {code}")
    finally:
        reader.close()  # the socket stays open: the file object only wrapped it


def _smtp_reply(reader: object, where: str) -> tuple[int, list[bytes]]:
    """One SMTP reply: its code and the text of its lines."""
    lines: list[bytes] = []
    size = 0
    while True:
        line: bytes = reader.readline(_REPLY_LIMIT)  # type: ignore[attr-defined]
        size += len(line)
        if not line or size > _REPLY_LIMIT or len(line) < 4 or not line[:3].isdigit():  # noqa: PLR2004 - "250 " or "250-"
            raise CertificateReadError(f"{where}: not an SMTP server's answer")
        lines.append(line[4:].strip())
        if line[3:4] != b"-":
            return int(line[:3]), lines


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# --- certificates as credentials ----------------------------------------------------------------


def fingerprint(certificate: x509.Certificate) -> str:
    """The SHA-256 fingerprint, lowercase hex: a certificate's id (never a secret)."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def is_trust_anchor(certificate: x509.Certificate) -> bool:
    """Self-signed: its subject is its issuer and its own key verifies its signature."""
    if certificate.subject != certificate.issuer:
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def watched(presented: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """The certificates of a place worth a warning: every one but the trust anchors.

    A place that presents a self-signed certificate alone keeps it: it is its own anchor,
    and nothing else would warn about it.
    """
    if len(presented) == 1:
        return list(presented)
    return [certificate for certificate in presented if not is_trust_anchor(certificate)]


def credential(certificate: x509.Certificate, source: str, location: str) -> WatchedToken:
    """A certificate as the credential a pass watches."""
    identifier = fingerprint(certificate)
    names = _alternative_names(certificate)
    return WatchedToken(
        source=source,
        token_id=identifier,
        name=_common_name(certificate) or (names[0] if names else "") or identifier[:16],
        expires_at=certificate.not_valid_after_utc,
        created_at=certificate.not_valid_before_utc,
        labels={
            "subject": certificate.subject.rfc4514_string(),
            "issuer": certificate.issuer.rfc4514_string(),
            "serial": format(certificate.serial_number, "x"),
            "sans": ",".join(names),
            "location": location,
        },
        credential_kind=CredentialKind.CERTIFICATE,
    )


def _common_name(certificate: x509.Certificate) -> str | None:
    attributes = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attributes:
        return None
    value = attributes[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _alternative_names(certificate: x509.Certificate) -> list[str]:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    names: list[str] = [str(n) for n in extension.value.get_values_for_type(x509.DNSName)]
    names += [str(n) for n in extension.value.get_values_for_type(x509.IPAddress)]
    return names
