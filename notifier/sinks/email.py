"""The email sink: one digest per recipient per pass, over SMTP (STARTTLS, TLS or plain).

It is a digest sink: the pass hands it every notice at once, and with several replicas only
the holder of the sink's lease runs it, so a recipient gets one digest per pass. Recipients
are the configured ``to`` list, or else each token's owner when that is an email address.
A digest lists the recipient's tokens by expiry, as plain text and HTML.

SMTP 5xx answers (a refused recipient, a refused login) are permanent; 4xx answers and
connection errors are transient and retried within the pass's deadline. A stop request ends a
delivery at once, even in the middle of an SMTP session.

Every header value is made one line of plain text first: a token name from an external source
may hold CR, LF, U+2028 or U+0085, which would otherwise end the header (the email library
refuses them, and the whole digest with them).
"""

from __future__ import annotations

import re
import smtplib
import ssl
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from functools import partial
from typing import Any, Unpack

from jinja2 import Template

from notifier.config.options import KindOptions, OptionError, option_duration, option_list
from notifier.core.model import Notice
from notifier.sinks import Outcome
from notifier.sinks.base import MessageSink, SinkParts, parts
from notifier.sinks.config import ROUTE_OPTIONS, check_templates
from notifier.sinks.registry import SinkContext
from notifier.sinks.retrying import Permanent, Retrier, Transient
from notifier.sinks.templates import DEFAULT_SUBJECT, digest_noun, inline, load, token_context

_EMAIL = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")
# Control characters (CR, LF, NEL, ...), format characters (U+202E, ...), line and paragraph
# separators: none belongs in a header, and the line breaks among them would end it.
_HEADER_UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp"})
_NO_RECIPIENT = "no recipient: the token's owner is not an email address and no 'to' is set"
OPTIONS = KindOptions(
    (
        "host",
        "port",
        "security",
        "username",
        "password",
        "from",
        "to",
        "subject",
        "template",
        "html_template",
        "timeout",
        *ROUTE_OPTIONS,
    ),
    secrets=frozenset({"password"}),
)
# A configured address (from, to); a token's owner is matched by _EMAIL, which also refuses <>.
_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_SECURITY_PORTS = {"starttls": 587, "tls": 465, "none": 25}


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check the SMTP server, its login, the sender, the recipients and the templates."""
    host = options.get("host")
    if not isinstance(host, str) or not host.strip():
        raise OptionError("host", "is required: the SMTP server")
    security = str(options.get("security") or "starttls").lower()
    if security not in _SECURITY_PORTS:
        raise OptionError("security", "expected starttls, tls or none")
    port_text = options.get("port")
    try:
        port = int(port_text) if port_text is not None else _SECURITY_PORTS[security]
    except (TypeError, ValueError):
        raise OptionError("port", f"{port_text!r} is not a port number") from None
    if not 0 < port < 65536:  # noqa: PLR2004
        raise OptionError("port", f"{port} is out of range")
    sender = options.get("from")
    if not isinstance(sender, str) or not _ADDRESS.fullmatch(sender.strip()):
        raise OptionError("from", "is required: the sender's email address")
    recipients = option_list("to", options.get("to"))
    for address in recipients:
        if not _ADDRESS.fullmatch(address):
            raise OptionError("to", f"{address!r} is not an email address")
    username = options.get("username")
    password = options.get("password")
    if (username is None) != (password is None):
        raise OptionError(
            "password" if username else "username", "set username and password together"
        )
    templates = check_templates(
        options,
        [("subject", None), ("template", "email.txt.j2"), ("html_template", "email.html.j2")],
    )
    return {
        **templates,
        "host": host.strip(),
        "port": port,
        "security": security,
        "username": username,
        "password": password,
        "from": sender.strip(),
        "to": recipients,
        "timeout": option_duration("timeout", options.get("timeout"), "30s"),
    }


class EmailSink(MessageSink):
    """Mail each recipient one digest of their tokens."""

    digest = True

    def __init__(
        self,
        name: str,
        *,
        options: dict[str, Any],
        timeout: timedelta,
        **common: Unpack[SinkParts],
    ) -> None:
        super().__init__(name, **common)
        self._options = options
        self._timeout = timeout.total_seconds()
        self._subject = inline(options.get("subject"), DEFAULT_SUBJECT)
        self._text = load(options.get("template"), "email.txt.j2")
        self._html = load(options.get("html_template"), "email.html.j2", html=True)

    def deliver(self, notices: Sequence[Notice]) -> list[Outcome]:
        """Send one digest per recipient; a notice succeeds when all its digests did."""
        recipients: dict[str, list[int]] = {}
        outcomes: list[Outcome | None] = [None] * len(notices)
        configured: tuple[str, ...] = self._options.get("to") or ()
        for index, notice in enumerate(notices):
            addresses = configured or _owner_address(notice)
            if not addresses:
                outcomes[index] = Outcome.failed(_NO_RECIPIENT, permanent=True)
            for address in addresses:
                recipients.setdefault(address, []).append(index)
        retrier = Retrier(self._retry, sink=self.name, stop=self._stop)
        connection = _Connection(self._options, self._timeout)
        try:
            for address, indexes in recipients.items():
                chosen = sorted(
                    indexes,
                    key=lambda i: notices[i].expires_at or datetime.max.replace(tzinfo=UTC),
                )
                try:
                    message = self._message(address, [notices[i] for i in chosen])
                except Permanent as error:  # this recipient's digest cannot be built
                    outcome = Outcome.failed(str(error), permanent=True)
                else:
                    outcome = retrier.run(partial(connection.send, message))
                for index in indexes:
                    previous = outcomes[index]
                    if previous is None or previous.ok:
                        outcomes[index] = outcome
        finally:
            retrier.close(connection.close)
        return [outcome or Outcome.sent() for outcome in outcomes]

    def _message(self, recipient: str, notices: list[Notice]) -> EmailMessage:
        tokens = [token_context(notice, self._slice_name) for notice in notices]
        context = {
            "recipient": recipient,
            "tokens": tokens,
            "count": len(tokens),
            "noun": digest_noun(notices),  # "API token", "certificate", or "credential"
        }
        sender = self._options["from"]
        headers = {
            "Subject": _render(self._subject, context),
            "From": sender,
            "To": recipient,
            "Date": formatdate(localtime=False),
            "Message-ID": make_msgid(domain=sender.rsplit("@", 1)[-1]),
        }
        message = EmailMessage()
        try:
            for name, value in headers.items():
                message[name] = header_text(value)
        except Exception as error:  # noqa: BLE001 - the header parsers raise several kinds
            raise Permanent(f"header refused: {type(error).__name__}: {error}") from None
        message.set_content(_render(self._text, context))
        message.add_alternative(_render(self._html, context), subtype="html")
        return message

    def close(self) -> None:
        """Nothing held between passes: each delivery opens its own SMTP session."""


def header_text(value: str) -> str:
    r"""*value* as one line fit for an email header.

    Each run of control, format and line-breaking characters becomes one space, and the ends
    are trimmed: ``"a\r\nBcc: x"`` is ``"a Bcc: x"``, all inside the one header.
    """
    if value.isprintable():
        return value.strip()  # the common case, without a per-character walk
    out: list[str] = []
    for char in value:
        if unicodedata.category(char) not in _HEADER_UNSAFE:
            out.append(char)
        elif out and out[-1] != " ":
            out.append(" ")
    return "".join(out).strip()


def _render(template: Template, context: dict[str, Any]) -> str:
    try:
        return template.render(context)
    except Exception as error:  # noqa: BLE001 - a broken template is the operator's to fix
        raise Permanent(f"template failed: {type(error).__name__}: {error}") from None


def _owner_address(notice: Notice) -> tuple[str, ...]:
    owner = (notice.owner or "").strip()
    # An owner with control or format characters is not an address to send to.
    return (owner,) if owner.isprintable() and _EMAIL.fullmatch(owner) else ()


class _Connection:
    """One SMTP session per delivery, reopened after a failure."""

    def __init__(self, options: dict[str, Any], timeout: float) -> None:
        self._options = options
        self._timeout = timeout
        self._smtp: smtplib.SMTP | None = None

    def send(self, message: EmailMessage) -> None:
        try:
            smtp = self._open()
            smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as error:
            self.close()
            codes = [code for code, _ in error.recipients.values()]
            _raise_for(min(codes) if codes else 550, "the recipient was refused")
        except smtplib.SMTPAuthenticationError as error:
            self.close()
            raise Permanent(f"SMTP login refused ({error.smtp_code})") from None
        except smtplib.SMTPNotSupportedError:
            self.close()
            raise Permanent("the SMTP server does not offer STARTTLS") from None
        except smtplib.SMTPResponseException as error:
            self.close()
            _raise_for(error.smtp_code, "the SMTP server refused the message")
        except (smtplib.SMTPException, OSError) as error:  # disconnects, timeouts, TLS
            self.close()
            raise Transient(f"SMTP unreachable: {type(error).__name__}") from None

    def _open(self) -> smtplib.SMTP:
        if self._smtp is not None:
            return self._smtp
        host, port = self._options["host"], self._options["port"]
        security = self._options["security"]
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if security == "tls":
            smtp = smtplib.SMTP_SSL(host, port, timeout=self._timeout, context=context)
        else:
            smtp = smtplib.SMTP(host, port, timeout=self._timeout)
        try:
            if security == "starttls":
                smtp.starttls(context=context)
            if self._options.get("username"):
                smtp.login(self._options["username"], self._options["password"])
        except BaseException:
            smtp.close()  # a refused STARTTLS or login must not leak the socket
            raise
        self._smtp = smtp
        return smtp

    def close(self) -> None:
        if self._smtp is None:
            return
        try:
            self._smtp.quit()
        except (smtplib.SMTPException, OSError):
            self._smtp.close()
        self._smtp = None


def _raise_for(code: int, what: str) -> None:
    if code >= 500:  # noqa: PLR2004 - SMTP's permanent failures
        raise Permanent(f"{what} ({code})")
    raise Transient(f"{what} ({code})")


def build(name: str, context: SinkContext) -> EmailSink:
    """Build the email sink called *name*."""
    options = dict(context.options)
    return EmailSink(name, options=options, timeout=options["timeout"], **parts(context))
