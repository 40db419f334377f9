"""Values a server or a planted file chooses: tokens that would inject a header line,
times no clock can show, text that would steer a terminal (issue 15, items 6, 7, 9)."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest
from rich.console import Console

from adapters.file_state_store import decode_state, state_to_dict
from adapters.memory import make_jwt
from cidx_auth.app.render import printable, results_table
from cidx_auth.domain.breaker import BreakerState, Circuit
from cidx_auth.domain.client_state import ClientState
from cidx_auth.domain.errors import CorruptStore, MalformedToken
from cidx_auth.domain.moments import BEYOND, iso_utc, local_text
from cidx_auth.domain.token import (
    AccessToken,
    Session,
    TokenRules,
    check_jwt_shape,
    parse_access_token,
    session_from_dict,
    session_to_dict,
)

NOW = 1_800_000_000.0
GOOD = make_jwt({"iat": NOW, "exp": NOW + 600, "username": "alice"})


@pytest.mark.parametrize("extra", ["\n", "\r\n", " ", "\t", "\x00", '"', "=", "+", "/",
                                   "\u00e9", "\nX-Injected: yes"])
@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_a_token_with_anything_but_base64url_and_dots_is_malformed(
    extra: str, where: str
) -> None:
    head, claims, signature = GOOD.split(".")
    raw = {"start": extra + GOOD, "middle": f"{head}.{claims}{extra}.{signature}",
           "end": GOOD + extra}[where]
    with pytest.raises(MalformedToken, match="characters a JWT cannot"):
        parse_access_token(raw, TokenRules(), NOW)


def test_a_well_formed_token_still_parses_and_its_shape_check_returns_it() -> None:
    assert check_jwt_shape(GOOD) == GOOD
    assert parse_access_token(GOOD, TokenRules(), NOW).raw == GOOD
    assert check_jwt_shape("a.b.") == "a.b."  # an empty signature is a shape, not a charset issue


def test_a_stored_token_is_held_to_the_same_rule() -> None:
    """What `token` would print comes from the store: a planted newline never gets out."""
    token = parse_access_token(GOOD, TokenRules(), NOW)
    stored = session_to_dict(Session(token, "r-1"), NOW)
    assert session_from_dict(json.loads(json.dumps(stored))).token.raw == GOOD
    bent = AccessToken(GOOD + "\nX-Injected: yes", "RS256", NOW + 600, NOW, None, None)
    with pytest.raises(MalformedToken, match="characters a JWT cannot"):
        session_from_dict(session_to_dict(Session(bent, "r-1"), NOW))


def state_file(**breaker: Any) -> bytes:
    document = state_to_dict(ClientState(BreakerState(Circuit.OPEN, 5, NOW + 30)))
    document["breaker"].update(breaker)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    "change",
    [
        {"open_until": 1e12},  # the year 33658
        {"open_until": 1e20},
        {"open_until": float("inf")},
        {"open_until": float("nan")},
        {"open_until": -1.0},
        {"probe_until": 1e300},
        {"open_period": 1e9},  # longer than any Retry-After is honoured
        {"open_period": float("-inf")},
        {"open_until": 10**400},  # an int no float can hold
    ],
)
def test_an_impossible_state_file_is_damaged(change: dict[str, Any]) -> None:
    with pytest.raises(CorruptStore, match="damaged"):
        decode_state(state_file(**change))


@pytest.mark.parametrize(
    "data", [b"[" * 50_000 + b"]" * 50_000, b'{"version": 1' + b"9" * 5000 + b"}",
             b"\xff\xfe", b"null"],
)
def test_a_state_file_that_is_not_json_state_is_damaged(data: bytes) -> None:
    with pytest.raises(CorruptStore):
        decode_state(data)


def test_a_possible_state_file_reads_back() -> None:
    state = decode_state(state_file(open_until=NOW + 3600, open_period=300.0))
    assert (state.breaker.open_until, state.breaker.open_period) == (NOW + 3600, 300.0)


def test_times_far_from_now_show_a_date_and_never_overflow() -> None:
    assert local_text(NOW - 3 * 86400, NOW) == time.strftime("%Y-%m-%d %H:%M:%S",
                                                             time.localtime(NOW - 3 * 86400))
    for absurd in (1e20, float("inf"), float("nan"), -1e20):
        assert local_text(absurd, NOW) == BEYOND
        assert iso_utc(absurd) is None


HOSTILE = "\x1b]8;;https://evil\x07src/auth.py\x1b]8;;\x07\x1b[31m\r\x9b2J\u202egnp.exe\x7f"


def test_printable_drops_what_a_terminal_acts_on() -> None:
    shown = printable(HOSTILE)
    assert shown == "]8;;https://evilsrc/auth.py]8;;[31m2Jgnp.exe"
    assert printable("a\tb\nc") == "a b c"
    assert printable("a\tb\nc", keep_newlines=True) == "a b\nc"


@pytest.mark.parametrize(("hidden", "left"), [
    ("\u2028", ""), ("\u2029", ""),  # line and paragraph separators (Zl, Zp)
    ("\u200e", ""), ("\u200f", ""), ("\u061c", ""),  # directional marks (Cf)
    ("\u2066", ""), ("\u00ad", ""), ("\ufeff", ""),  # an isolate, soft hyphen, BOM (Cf)
    ("\x85", ""),  # next line (C1, Cc)
    ("\x1b]52;c;ZXZpbA==\x07", "]52;c;ZXZpbA=="),  # OSC 52, a clipboard write: ESC, BEL
    ("\x1b]0;pwned\x1b\\", "]0;pwned\\"),  # a window title
    ("\x1b[2J\x1b[H", "[2J[H"),  # clear the screen
])
def test_printable_drops_every_control_format_and_separator_character(
    hidden: str, left: str
) -> None:
    shown = printable(f"alice{hidden}@host")
    assert shown == f"alice{left}@host"
    assert shown.isprintable()


def test_printable_keeps_every_visible_character() -> None:
    visible = "été 中文 ✓ 🙂 Ω pages/[id].tsx \u2018quotes\u2019"
    assert printable(visible) == visible
    assert printable(visible + "\t|", keep_newlines=True) == visible + " |"


def test_an_error_message_quoting_a_server_is_printed_on_one_clean_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cidx_auth.app.cli import _fail

    with pytest.raises(SystemExit) as stopped:
        _fail(f"the server said: {HOSTILE}\nsecond line", 6)
    assert stopped.value.code == 6
    err = capsys.readouterr().err
    assert err == f"cidx-auth: error: the server said: {printable(HOSTILE)} second line\n"
    assert not any(char in err for char in "\x1b\x07\r\x9b\u202e\x7f")


def test_log_lines_quoting_a_server_carry_no_control_characters() -> None:
    import logging

    from cidx_auth.app.cli import _PrintableFormatter

    record = logging.LogRecord("cidx_auth", logging.WARNING, __file__, 1,
                               "login refused: %s", (HOSTILE,), None)
    line = _PrintableFormatter("cidx-auth: %(levelname)s: %(message)s").format(record)
    assert line == f"cidx-auth: WARNING: login refused: {printable(HOSTILE)}"


def render(answer: dict[str, Any], terminal: bool) -> str:
    out = io.StringIO()
    results_table(answer, Console(file=out, width=200, color_system=None,
                                  force_terminal=terminal))
    return out.getvalue()


@pytest.mark.parametrize("terminal", [True, False], ids=["table", "pipe"])
def test_query_results_are_text_not_markup(terminal: bool) -> None:
    answer = {"total_results": "[bold]3[/bold]", "results": [
        {"file_path": "pages/[id].tsx", "line_number": 3, "code_snippet": "[/x]",
         "similarity_score": 0.9},
        {"file_path": "[link=https://evil]src/auth.py[/link]", "line_number": "[red]1",
         "code_snippet": HOSTILE + "\nsecond line", "similarity_score": "[blink]hi"},
        {"file_path": "half\ud800pair.py", "line_number": 1, "code_snippet": "\udfff",
         "similarity_score": 0.1},
    ]}
    shown = render(answer, terminal)
    for literal in ("pages/[id].tsx:3", "[/x]", "[link=https://evil]src/auth.py[/link]:[red]1",
                    "[blink]hi", "half\ufffdpair.py:1"):
        assert literal in shown
    assert ("[bold]3[/bold] result(s)" in shown) is terminal  # a pipe gets the hits alone
    assert not any(char in shown for char in "\x1b\x07\r\x9b\u202e\x7f")
    shown.encode()  # a lone surrogate would not encode: it is U+FFFD
    # The whole snippet, its newline a space: it fakes no line of its own.
    snippet = printable(" ".join((HOSTILE + "\nsecond line").split()))  # CR: a space too
    assert snippet.endswith(" second line")
    assert not any(line.startswith("second line") for line in shown.splitlines())
    if terminal:
        assert snippet in " ".join(shown.split())
    else:
        assert shown.splitlines()[1].split("\t") == [
            "[blink]hi", "?", "[link=https://evil]src/auth.py[/link]:[red]1", snippet]
