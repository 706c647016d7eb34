"""The words of a notice: the documented warn sentence, with token text made harmless.

Token names and ids come from whoever created the token. Before they reach a log line they are
escaped so that nothing in them can end the line, start a forged one, or reorder what a
terminal shows: control characters (C0, C1, DEL), Unicode format characters such as U+202E
(right-to-left override), line and paragraph separators, and the backslash that introduces our
own escapes.
"""

from __future__ import annotations

import unicodedata

from notifier.core.model import CredentialKind, Notice, NoticeKind

_SHORT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Categories that can break or disguise a line: control, format, line/paragraph separator,
# surrogate, private use, unassigned.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})

HINT = "Create a new token and revoke this one before it expires."
# A certificate's id is its SHA-256 fingerprint (64 hex digits); the line shows its start,
# as `git log` shows a commit's: 16 digits (64 bits) tell certificates apart, and payloads
# carry the whole fingerprint.
FINGERPRINT_PREFIX = 16


def escape(text: str) -> str:
    r"""Return *text* with every character that could forge or hide log content escaped.

    The backslash is escaped too, so an escaped newline and a literal ``\n`` stay apart.

    >>> escape("ci\nWarn: x\u202e")
    'ci\\nWarn: x\\u202e'
    """
    if text.isprintable() and "\\" not in text:
        return text  # the common case, without a per-character walk
    return _escape(text, backslash=True)


def one_line(text: str) -> str:
    """Escape what could break or disguise a line, but not backslashes.

    For text we composed from already escaped parts (the warn sentence), so it is not escaped
    twice; it still guarantees one line whatever the text holds.
    """
    if text.isprintable():
        return text
    return _escape(text, backslash=False)


def _escape(text: str, *, backslash: bool) -> str:
    out: list[str] = []
    for char in text:
        if char == "\\" and not backslash:
            out.append(char)
        elif char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif unicodedata.category(char) in _UNSAFE_CATEGORIES:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")  # noqa: PLR2004
        else:
            out.append(char)
    return "".join(out)


def unit(count: int, slice_name: str) -> str:
    """Return *slice_name* made plural unless *count* is 1 ("day", "days")."""
    return slice_name if count == 1 else f"{slice_name}s"


def sentence(notice: Notice, slice_name: str) -> str:
    """Return the sentence for *notice*, e.g. the documented expiring line.

    ``Warn: API Token <name> (ID <id>) will expire in less than <X> <unit>.``, for a
    certificate ``Warn: Certificate <name> (ID <fingerprint prefix>) will expire ...``, and
    for an AWS access key ``Warn: Access Key <name> (ID <id>) is due for rotation in less
    than <X> <unit>.``
    """
    name = escape(notice.token_name)
    token_id = escape(shown_id(notice))
    subject = f"{notice.credential_kind.subject} {name} (ID {token_id})"
    if notice.kind is NoticeKind.EXPIRED:
        if notice.credential_kind is CredentialKind.ACCESS_KEY:
            return f"Warn: {subject} is past its maximum age and due for rotation."
        return f"Warn: {subject} has expired."
    if notice.kind is NoticeKind.RENEWED:
        return _renewed(notice, subject)
    if notice.kind is NoticeKind.RESOLVED:
        return f"Info: {subject} was revoked or removed."
    count = notice.days_left
    if notice.credential_kind is CredentialKind.ACCESS_KEY:  # AWS never expires it
        return (
            f"Warn: {subject} is due for rotation in less than {count} {unit(count, slice_name)}."
        )
    return f"Warn: {subject} will expire in less than {count} {unit(count, slice_name)}."


def _renewed(notice: Notice, subject: str) -> str:
    if notice.reason == "rotated" and notice.credential_kind is CredentialKind.CERTIFICATE:
        return f"Info: {subject} was replaced by another certificate where it was found."
    if notice.reason == "rotated":
        return f"Info: {subject} was rotated; the old secret is no longer warned about."
    if notice.reason == "no_expiry" or notice.expires_at is None:
        return f"Info: {subject} no longer expires."
    return f"Info: {subject} no longer expires soon; it now expires {_day(notice)}."


def shown_id(notice: Notice) -> str:
    """The id as the line shows it: a certificate's fingerprint shortened, others whole."""
    if notice.credential_kind is CredentialKind.CERTIFICATE:
        return notice.token_id[:FINGERPRINT_PREFIX]
    return notice.token_id


def _day(notice: Notice) -> str:
    assert notice.expires_at is not None  # noqa: S101 - callers check
    return notice.expires_at.strftime("%Y-%m-%d")
