"""Whatever bytes end up in ``.token`` or ``.creds``, nothing unhandled escapes.

The strategies cover random bytes, valid encryptions of garbage plaintext (bad JSON,
wrong shapes, missing fields: past the cipher, into the parser) and truncations or
bit flips of a genuine file.

A truncation or a flip can leave the genuine token in another spelling: its ``=`` padding
cut off (cryptography 51 decodes unpadded base64) or a flip in the unused low bits of the
last character (a decoder may ignore them). Which spellings decode is the cipher's
business and changes between cryptography versions; Fernet's HMAC makes sure that any
content that decrypts at all holds the genuine plaintext. So the cipher is the oracle:
content it decrypts must load as the genuine file and stay where it is; any other content
must load as nothing (and be set aside, or left alone if it is another program's).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.fernet_cipher import FernetCipher, project_cipher
from adapters.file_credential_store import UNREADABLE
from adapters.file_io import is_foreign
from adapters.project_layout import ProjectLayout
from adapters.user_secret import UserSecret
from cidx_auth.domain.errors import CorruptStore, CredentialsUnreadable, MalformedToken
from cidx_auth.domain.token import session_from_dict, session_to_dict
from tests.integration.conftest import Files
from tests.integration.storage_helpers import ALICE, SERVER_URL, known_sessions

FIXTURES_ARE_RESET = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


def near_misses() -> st.SearchStrategy[dict[str, object]]:
    """A real session document with one field dropped or replaced."""
    document = session_to_dict(known_sessions()[0], 0.0)
    return st.sampled_from(sorted(document)).flatmap(
        lambda key: st.one_of(
            st.just({k: v for k, v in document.items() if k != key}),
            JSON_VALUES.map(lambda value: {**document, key: value}),
        )
    )


def still_genuine(cipher: FernetCipher, content: bytes, genuine: bytes) -> bool:
    """Whether the cipher still reads ``content`` as the genuine file: the same token in
    another spelling. (A valid encryption of garbage decrypts too, to other plaintext.)"""
    try:
        return cipher.decrypt(content) == cipher.decrypt(genuine)
    except CorruptStore:
        return False


def garbage(cipher: FernetCipher, genuine: bytes) -> st.SearchStrategy[bytes]:
    encrypted_garbage = st.one_of(
        st.binary(max_size=512),
        JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    ).map(cipher.encrypt)
    truncated = st.integers(0, len(genuine) - 1).map(lambda n: genuine[:n])
    flipped = st.tuples(st.integers(0, len(genuine) - 1), st.integers(1, 255)).map(
        lambda at: genuine[: at[0]] + bytes([genuine[at[0]] ^ at[1]]) + genuine[at[0] + 1 :]
    )
    return st.one_of(st.binary(max_size=2048), encrypted_garbage, truncated, flipped)


def near_miss_credentials(cipher: FernetCipher) -> st.SearchStrategy[bytes]:
    """Credentials documents with a field dropped or of the wrong type or length."""
    document = {"version": 1, "username": "alice", "password": "pw"}
    bad = st.one_of(
        st.sampled_from(sorted(document)).map(
            lambda key: {k: v for k, v in document.items() if k != key}
        ),
        st.sampled_from(["username", "password"]).flatmap(
            lambda key: st.sampled_from([None, 7, "", "x" * 1001, ["pw"]]).map(
                lambda value: {**document, key: value}
            )
        ),
        st.sampled_from([0, 2, "1", None]).map(lambda version: {**document, "version": version}),
    )
    return bad.map(lambda doc: cipher.encrypt(json.dumps(doc).encode()))


def cipher_for(project: Path, config_dir: Path) -> FernetCipher:
    return project_cipher(project, SERVER_URL, UserSecret(config_dir))


@pytest.fixture
def genuine(files: Files) -> bytes:
    files.provider.login(ALICE)
    return files.store.path.read_bytes()


@FIXTURES_ARE_RESET
@given(data=st.data())
def test_any_token_file_content_loads_as_none_and_only_our_own_is_set_aside(
    files: Files, project: Path, config_dir: Path, genuine: bytes, data: st.DataObject
) -> None:
    cipher = cipher_for(project, config_dir)
    files.store.path.write_bytes(genuine)  # an earlier example's content
    expected = files.store.load()
    assert expected is not None
    content = data.draw(garbage(cipher, genuine))
    files.store.path.write_bytes(content)
    aside = set(files.store.path.parent.glob(".token.corrupt-*"))
    if still_genuine(cipher, content, genuine):  # the same token, spelt otherwise
        assert files.store.load() == expected
        assert files.store.path.read_bytes() == content
        assert set(files.store.path.parent.glob(".token.corrupt-*")) == aside
        return
    assert files.store.load() is None
    if not is_foreign(content):  # damaged: set aside, so a new token can be stored
        assert not files.store.path.exists()
        assert set(files.store.path.parent.glob(".token.corrupt-*")) - aside
    else:  # another program's file: left exactly as it is
        assert files.store.path.read_bytes() == content
        assert set(files.store.path.parent.glob(".token.corrupt-*")) <= aside


@FIXTURES_ARE_RESET
@given(document=near_misses())
def test_a_session_document_with_a_bad_field_is_read_exactly_as_the_parser_says(
    files: Files, project: Path, config_dir: Path, document: dict[str, object]
) -> None:
    cipher = cipher_for(project, config_dir)
    files.store.path.parent.mkdir(mode=0o700, exist_ok=True)
    files.store.path.write_bytes(cipher.encrypt(json.dumps(document).encode()))
    try:
        expected = session_from_dict(json.loads(json.dumps(document)))
    except MalformedToken:
        expected = None
    assert files.store.load() == expected
    assert files.store.path.exists() == (expected is not None)


@FIXTURES_ARE_RESET
@given(data=st.data())
def test_any_creds_file_content_is_a_clear_error(
    files: Files, project: Path, config_dir: Path, data: st.DataObject
) -> None:
    files.credentials.path.unlink(missing_ok=True)  # an earlier example's content
    files.credentials.save(ALICE)
    genuine = files.credentials.path.read_bytes()
    cipher = cipher_for(project, config_dir)
    content = data.draw(st.one_of(garbage(cipher, genuine), near_miss_credentials(cipher)))
    files.credentials.path.write_bytes(content)
    if still_genuine(cipher, content, genuine):  # the same file, spelt otherwise
        assert files.credentials.load() == ALICE
        assert files.credentials.path.read_bytes() == content
        return
    if is_foreign(content):  # another program's .creds: none of ours, left alone
        assert files.credentials.load() is None
        assert files.credentials.path.read_bytes() == content
        return
    with pytest.raises(CredentialsUnreadable) as error:
        files.credentials.load()
    assert str(error.value) == UNREADABLE
    assert "cidx-auth login" in str(error.value)


@settings(FIXTURES_ARE_RESET, max_examples=25)
@given(content=st.binary(max_size=1024))
def test_a_provider_over_a_garbage_token_logs_in_again(
    project: Path, config_dir: Path, content: bytes
) -> None:
    first = Files(project, config_dir)
    first.credentials.save(ALICE)
    ProjectLayout(project).token.write_bytes(content)

    token = first.provider.get_token()

    assert first.gateway.logins == 1
    loaded = Files(project, config_dir).store.load()
    if is_foreign(content):  # another program's file is never overwritten
        assert ProjectLayout(project).token.read_bytes() == content and loaded is None
        return
    assert list(first.store.path.parent.glob(".token.corrupt-*"))  # set aside, not overwritten
    assert loaded is not None
    assert loaded.token.raw == token


def test_every_cut_and_every_flip_near_the_end_loads_as_the_cipher_reads_it(
    files: Files, project: Path, config_dir: Path, genuine: bytes
) -> None:
    """Exhaustive where the spellings of one token live (the padding and the last
    characters before it): each variant the cipher still reads loads as the genuine session
    and stays; every other loads as nothing and is set aside. Both kinds occur."""
    cipher = cipher_for(project, config_dir)
    expected = files.store.load()
    assert expected is not None
    tail = len(genuine) - 4
    variants = [genuine[:n] for n in range(len(genuine))] + [
        genuine[:at] + bytes([genuine[at] ^ bit]) + genuine[at + 1 :]
        for at in range(tail, len(genuine))
        for bit in range(1, 256)
    ]
    kinds = set()
    for content in variants:
        files.store.path.write_bytes(content)
        if still_genuine(cipher, content, genuine):
            kinds.add("genuine")
            assert files.store.load() == expected
            assert files.store.path.read_bytes() == content
        else:
            kinds.add("damaged")
            assert files.store.load() is None
            assert not files.store.path.exists()
    assert kinds == {"genuine", "damaged"}
