"""Secrets too weak to accept: the placeholders the project ships, and keys easy to guess.

The Kubernetes Secret template, the docs and the examples show placeholder values; a copy
applied unchanged must not start with ``replace-me…`` as a working key. And a key such as
``changeme`` four times, or one letter 32 times, is long but guessable. The estimate here is
deliberately simple (Shannon bits per character, counted only over characters that do not
repeat an earlier stretch); it refuses the obvious and accepts what a random generator makes
from 16 bytes or more (``openssl rand -hex 16`` scores about 125 bits, ``-hex 32`` about 240).
"""

from __future__ import annotations

import math
import re
from collections import Counter

MIN_KEY_BITS = 80
"""The least estimated entropy a key we verify with (pepper, bootstrap key) may have.

Random keys of 16 bytes or more, in hex or base64, always pass; 12 random bytes in hex fail
now and then (about 3 in 100), which is why the docs ask for 32.
"""

KEY_ADVICE = "generate one with: openssl rand -hex 32"

PLACEHOLDERS = frozenset(
    {
        # deploy/kubernetes/secret.template.yaml
        "replace-me",
        "replace-me-or-remove-this-key",
        "replace-me-with-openssl-rand-hex-32-then-remove",
        "https://hc-ping.com/replace-me",
        # docs/channels.md: the Standard Webhooks specification's example secret
        "whsec_mfkq9r8gkyqrtwjupd8ilpzio2lalasw",
        # docs/channels.md: the email password left out of the example
        "…",
    }
)
"""The project's own placeholder values, lower-cased."""

# Any edit of "replace-me" (replace_me, REPLACEME, replace-me-later) is still a placeholder.
_PLACEHOLDER_WORD = re.compile(r"replace[-_ ]?me", re.IGNORECASE)
_MIN_REPEAT = 3  # a repeat shorter than this is not worth a back-reference
_MAX_EXAMINED = 256  # past this many characters a key is long enough; keeps the scan cheap


def is_placeholder(secret: str) -> bool:
    """Whether *secret* is one of the placeholders the project ships (in any case)."""
    text = secret.strip()
    return text.lower() in PLACEHOLDERS or _PLACEHOLDER_WORD.search(text) is not None


def estimated_bits(secret: str) -> float:
    """A rough entropy estimate of *secret*, in bits.

    Shannon bits per character (from the characters' own frequencies, with the Miller-Madow
    correction, since a short random string under-uses its alphabet) times the number of
    characters that are not part of a repeat (3 or more characters) of an earlier stretch, in
    the manner of LZ77: ``a`` x 32 scores 0, ``changeme`` x 4 about what ``changeme`` does.
    """
    text = secret[:_MAX_EXAMINED]
    if not text:
        return 0.0
    size = len(text)
    counts = Counter(text)
    shannon = sum(n * math.log2(size / n) for n in counts.values()) / size
    bits_per_char = shannon + (len(counts) - 1) / (2 * size * math.log(2))
    return bits_per_char * _fresh_characters(text)


def _fresh_characters(text: str) -> int:
    """Characters of *text* not covered by a repeat; each repeat counts as one."""
    fresh = 0
    position = 0
    while position < len(text):
        length = _MIN_REPEAT
        # A repeat may overlap its source, as in LZ77: "aaaa" is "a" and one repeat.
        while position + length <= len(text) and (
            text[position : position + length] in text[: position + length - 1]
        ):
            length += 1
        length -= 1
        fresh += 1
        position += length if length >= _MIN_REPEAT else 1
    return fresh


def key_weakness(secret: str) -> str | None:
    """Why *secret* will not do as a key, without repeating it; None when it will."""
    if is_placeholder(secret):
        return f"a placeholder from the project's examples, not a key; {KEY_ADVICE}"
    if estimated_bits(secret) < MIN_KEY_BITS:
        return (
            "too easy to guess (repeated or too few different characters, under "
            f"{MIN_KEY_BITS} bits by estimate); {KEY_ADVICE}"
        )
    return None
