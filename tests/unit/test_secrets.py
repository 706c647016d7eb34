"""The secret format and its hash, as properties over many generated and mutated secrets."""

from __future__ import annotations

import hashlib
import hmac
import re

from hypothesis import given
from hypothesis import strategies as st

from notifier.tokens.secrets import (
    checksum_ok,
    fingerprint,
    generate_secret,
    has_our_shape,
    hash_secret,
)

PREFIXES = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,15}", fullmatch=True)
HEX = "0123456789abcdef"


class TestFormat:
    @given(PREFIXES)
    def test_generated_secrets_have_the_documented_shape(self, prefix: str) -> None:
        """A secret is the prefix and 48 lowercase hex characters, with a valid checksum."""
        secret = generate_secret(prefix)
        assert re.fullmatch(re.escape(prefix) + r"[0-9a-f]{48}", secret)
        assert has_our_shape(secret, prefix)
        assert checksum_ok(secret, prefix)

    @given(PREFIXES, st.integers(min_value=0, max_value=47), st.sampled_from(HEX))
    def test_any_single_typo_breaks_the_checksum(
        self, prefix: str, position: int, replacement: str
    ) -> None:
        """Changing any one hex character is caught by the CRC-32 checksum."""
        secret = generate_secret(prefix)
        index = len(prefix) + position
        if secret[index] == replacement:
            return
        typo = secret[:index] + replacement + secret[index + 1 :]
        assert has_our_shape(typo, prefix)
        assert not checksum_ok(typo, prefix)

    def test_secrets_do_not_repeat(self) -> None:
        """Ten thousand secrets from the CSPRNG are all different."""
        assert len({generate_secret("ntf_") for _ in range(10_000)}) == 10_000

    @given(st.text(max_size=80))
    def test_arbitrary_text_is_not_mistaken_for_a_token(self, text: str) -> None:
        """Text that is not prefix + 48 hex never passes as one of ours."""
        if re.fullmatch(r"ntf_[0-9a-f]{48}", text):
            return
        assert not has_our_shape(text, "ntf_")
        assert not checksum_ok(text, "ntf_")


class TestHash:
    @given(st.text(min_size=1, max_size=100))
    def test_sha256_without_pepper(self, secret: str) -> None:
        """Without a pepper the stored hash is the SHA-256 of the secret."""
        assert hash_secret(secret, None) == hashlib.sha256(secret.encode()).hexdigest()

    @given(st.text(min_size=1, max_size=100), st.text(min_size=1, max_size=40))
    def test_hmac_with_pepper(self, secret: str, pepper: str) -> None:
        """With a pepper the stored hash is HMAC-SHA-256 keyed by it."""
        expected = hmac.new(pepper.encode(), secret.encode(), hashlib.sha256).hexdigest()
        assert hash_secret(secret, pepper) == expected
        assert hash_secret(secret, pepper) != hash_secret(secret, None)

    @given(PREFIXES)
    def test_fingerprint_reveals_no_piece_of_the_secret(self, prefix: str) -> None:
        """The fingerprint logged for a bad token shares no 8-character run with the secret."""
        secret = generate_secret(prefix)
        digest = fingerprint(secret).removeprefix("sha256:")
        body = secret.removeprefix(prefix)
        assert not any(body[i : i + 8] in digest for i in range(len(body) - 7))
        assert fingerprint(secret) == fingerprint(secret)
