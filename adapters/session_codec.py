"""The stored form of a session, shared by every token store: Fernet over JSON.

One codec, so a session written by the file store and one written to Redis are the
same bytes, and both wipe the plaintext buffers they own (errata #13).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from adapters.fernet_cipher import wipe
from cidx_auth.domain.errors import CorruptStore
from cidx_auth.domain.token import Session, session_from_dict, session_to_dict

if TYPE_CHECKING:  # the ports module costs start-up time the token fast path avoids
    from cidx_auth.ports import Cipher


def encode_session(session: Session, cipher: Cipher, now: float) -> bytes:
    """Encrypt ``session`` as stored at ``now``."""
    plaintext = bytearray(json.dumps(session_to_dict(session, now)), "utf-8")
    try:
        return cipher.encrypt(bytes(plaintext))
    finally:
        wipe(plaintext)


def decode_session(data: bytes, cipher: Cipher) -> Session:
    """Decrypt and parse a stored session; any failure is one :class:`CorruptStore`."""
    plaintext = bytearray(cipher.decrypt(data))
    try:
        return session_from_dict(json.loads(plaintext))
    except (ValueError, TypeError, RecursionError):
        raise CorruptStore("the stored session is not in a format this version reads") from None
    finally:
        wipe(plaintext)
