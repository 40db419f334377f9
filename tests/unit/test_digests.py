"""The digests the adapters take from cryptography are the very functions hashlib computes:
keys derived and settings signed by earlier versions (which used hashlib) still match."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from adapters import digests

data = st.binary(max_size=200)


@given(data)
def test_sha256_is_hashlibs(value: bytes) -> None:
    assert digests.sha256(value) == hashlib.sha256(value).digest()


@given(st.binary(min_size=1, max_size=80), data)
def test_hmac_is_the_standard_librarys_and_checks_what_it_made(key: bytes, value: bytes) -> None:
    made = digests.hmac_sha256(key, value)
    assert made == hmac.new(key, value, hashlib.sha256).digest()
    assert digests.hmac_matches(key, value, made)
    assert not digests.hmac_matches(key, value + b"x", made)
    assert not digests.hmac_matches(key, value, made[:-1] + bytes([made[-1] ^ 1]))
    assert not digests.hmac_matches(key, value, made[:16])


@given(st.binary(min_size=1, max_size=64), st.binary(min_size=8, max_size=32),
       st.integers(min_value=1, max_value=50))
def test_pbkdf2_is_hashlibs(secret: bytes, salt: bytes, iterations: int) -> None:
    assert digests.pbkdf2_sha256(secret, salt, iterations) == hashlib.pbkdf2_hmac(
        "sha256", secret, salt, iterations, dklen=32)
