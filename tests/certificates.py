"""Certificates made in the test, and real TLS servers on 127.0.0.1 that present them.

A :class:`Chain` is a root, an intermediate and leaves issued under them (trustme); a
:class:`TlsServer` answers handshakes with the certificates it is given, in turn (a CDN
alternating certificates) or by the SNI name the client sent.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Self

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12


@dataclass
class Chain:
    """A root and an intermediate CA, issuing leaves."""

    root: trustme.CA = field(default_factory=trustme.CA)
    intermediate: trustme.CA = field(init=False)

    def __post_init__(self) -> None:
        self.intermediate = self.root.create_child_ca()

    def leaf(self, name: str, *, not_before: datetime, not_after: datetime) -> trustme.LeafCert:
        """A leaf for *name* (CN and SAN), valid from *not_before* to *not_after*."""
        return self.intermediate.issue_cert(
            name, common_name=name, not_before=not_before, not_after=not_after
        )

    def bundle(self, leaf: trustme.LeafCert, *, with_root: bool = True) -> bytes:
        """The PEM a server would hold: leaf, intermediate, and the root if asked."""
        pems = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        return pems + (self.root.cert_pem.bytes() if with_root else b"")


def certificates(pem: bytes) -> list[x509.Certificate]:
    """The certificates of a PEM bundle."""
    return x509.load_pem_x509_certificates(pem)


def fingerprint_of(pem: bytes, index: int = 0) -> str:
    """The SHA-256 fingerprint of the *index*-th certificate of *pem*."""
    return certificates(pem)[index].fingerprint(hashes.SHA256()).hex()


def leaf_pem(leaf: trustme.LeafCert) -> bytes:
    """The leaf certificate alone, PEM."""
    return leaf.cert_chain_pems[0].bytes()


def der(pem: bytes) -> bytes:
    """The first certificate of *pem*, DER."""
    return certificates(pem)[0].public_bytes(serialization.Encoding.DER)


def pkcs12_bytes(leaf: trustme.LeafCert, password: bytes) -> bytes:
    """The leaf, its key and its chain as a PKCS#12 file protected by *password*."""
    chain = certificates(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    return pkcs12.serialize_key_and_certificates(
        b"test",
        key,  # type: ignore[arg-type]  # trustme's keys are EC keys, which pkcs12 takes
        chain[0],
        chain[1:],
        serialization.BestAvailableEncryption(password),
    )


def server_context(leaf: trustme.LeafCert) -> ssl.SSLContext:
    """A TLS server context presenting *leaf* with its chain."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(context)
    return context


class TlsServer:
    """A TLS server on 127.0.0.1: each connection gets a handshake, then is closed.

    *contexts* are used in turn, one per connection, so two alternate as a CDN's edges
    may; with *by_name*, the SNI name the client sent picks the certificate instead.
    """

    def __init__(
        self,
        contexts: Sequence[ssl.SSLContext],
        *,
        by_name: dict[str, ssl.SSLContext] | None = None,
        before_handshake: Callable[[], object] | None = None,
    ) -> None:
        self.contexts = list(contexts)
        self._before_handshake = before_handshake
        self.handshakes = 0
        self._by_name = by_name or {}
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        if self._by_name:
            for context in self.contexts:
                context.sni_callback = self._pick

    def _pick(self, connection: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        if name in self._by_name:
            connection.context = self._by_name[name]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            context = self.contexts[self.handshakes % len(self.contexts)]
            self.handshakes += 1
            raw.settimeout(5)
            try:
                if self._before_handshake is not None:
                    self._before_handshake()
                with context.wrap_socket(raw, server_side=True):
                    pass
            except (ssl.SSLError, OSError, threading.BrokenBarrierError):
                raw.close()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        yield probe.getsockname()[1]


def write(path: Path, content: bytes) -> Path:
    """Write *content* to *path* (making its directory) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path
