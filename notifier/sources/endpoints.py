"""A TLS endpoint the x509 source reads certificates from: pure data, no network here.

Apart from sources/certificates.py so that the settings, which check endpoint options,
import neither ssl's handshakes nor cryptography (issue #13: a short command stays light).
"""

from __future__ import annotations

from dataclasses import dataclass

STARTTLS_PROTOCOLS = ("smtp",)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A TLS endpoint: where to connect, the SNI name to send, and a STARTTLS protocol."""

    host: str
    port: int
    sni: str | None = None
    starttls: str | None = None  # "smtp": plain SMTP first, then STARTTLS

    @property
    def place(self) -> str:
        """How the endpoint is named in ``location`` and in errors."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        extras = [f"sni={self.sni}"] * (self.sni is not None)
        extras += [f"starttls={self.starttls}"] * (self.starttls is not None)
        return ";".join([f"{host}:{self.port}", *extras])
