"""The query output: into a pipe or a file, one tab-separated line per hit with every
field whole; at a terminal, a table whose score and location are never cut, with a
repository column only when the hits span repositories; an answer that is not a list of
results refused as a protocol error, not a crash."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from cidx_auth.app.render import results_table
from cidx_auth.domain.errors import ProtocolError


def hit(path: str, repository: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {"file_path": path, "line_number": 1, "code_snippet": "def f():",
                            "similarity_score": 0.5}
    if repository is not None:
        item["repository_alias"] = repository
    return item


def shown(answer: dict[str, Any], spans: bool | None = None) -> str:
    out = io.StringIO()
    results_table(answer, Console(file=out, width=200, color_system=None, force_terminal=True),
                  spans=spans)
    return out.getvalue()


def piped(answer: dict[str, Any], repository: str | None = None) -> str:
    out = io.StringIO()
    results_table(answer, Console(file=out, width=80, force_terminal=False),
                  repository=repository)
    return out.getvalue()


def on_terminal(answer: dict[str, Any], width: int) -> str:
    out = io.StringIO()
    results_table(answer, Console(file=out, width=width, color_system=None,
                                  force_terminal=True), spans=True)
    return out.getvalue()


LONG_PATH = "frontend/src/app/(dashboard)/settings/profile/pages/[id].tsx"
SNIPPET = ("export default function Page({ params }) {\n\tconst user =\t\tuseUser(params.id);"
           "\r\n    return <Profile user={user} />;\n}\n" + "// padding words " * 20)
SNIPPET_SHOWN = ("export default function Page({ params }) { const user = useUser(params.id); "
                 "return <Profile user={user} />; } " + " ".join(["// padding words"] * 20))
LONG = {"total_results": 2, "results": [
    {"file_path": LONG_PATH, "line_number": 42, "code_snippet": SNIPPET,
     "similarity_score": 0.87345, "repository_alias": "frontend"},
    {"file_path": "a.py", "line_number": 1, "code_snippet": "def f():\n    pass",
     "similarity_score": 0.5, "repository_alias": "backend"},
]}


def test_the_long_path_is_60_characters() -> None:
    assert len(LONG_PATH) == 60


def test_into_a_pipe_each_hit_is_one_line_of_four_whole_fields() -> None:
    lines = piped(LONG).splitlines()
    assert [line.split("\t") for line in lines] == [
        ["0.873", "frontend", f"{LONG_PATH}:42", SNIPPET_SHOWN],
        ["0.500", "backend", "a.py:1", "def f(): pass"],
    ]
    assert all(line.count("\t") == 3 for line in lines)
    assert all(len(line) > 80 for line in lines[:1])  # never cut or wrapped at the width


def test_into_a_pipe_the_repository_is_always_there() -> None:
    one = {"results": [{"file_path": "a.py", "line_number": 1, "code_snippet": "x",
                        "similarity_score": 1}]}
    assert piped(one, repository="docs") == "1.000\tdocs\ta.py:1\tx\n"
    assert piped(one) == "1.000\t?\ta.py:1\tx\n"
    theirs = {"results": [{**one["results"][0], "repository_alias": "backend"}]}
    assert piped(theirs, repository="docs") == "1.000\tbackend\ta.py:1\tx\n"


def test_into_a_pipe_a_tab_or_newline_in_any_field_fakes_no_column_or_line() -> None:
    bent = {"results": [{"file_path": "a\tb\nc.py", "line_number": "1\t2",
                         "code_snippet": None, "similarity_score": "high\tlow",
                         "repository_alias": "x\ty"}]}
    assert piped(bent) == "high low\tx y\ta b c.py:1 2\t\n"


def test_into_a_pipe_every_kind_of_line_break_separates_words_and_null_is_unknown() -> None:
    """CR, VT, FF, NEL, U+2028 and U+2029 end a line as a newline does: each becomes the
    one space between its words, not nothing (which would glue them); a null path or
    line shows as "?", not "None"."""
    breaks = {"results": [{"file_path": None, "line_number": None, "similarity_score": 0.5,
                           "code_snippet": "a\rb\x0bc\x0cd\x85e\u2028f\u2029g\x1b[2Jh",
                           "repository_alias": "r"}]}
    assert piped(breaks) == "0.500\tr\t?:?\ta b c d e f g[2Jh\n"


def test_into_a_pipe_no_results_print_nothing() -> None:
    assert piped({"results": [], "total_results": 0}) == ""


@pytest.mark.parametrize("width", [80, 40])
def test_at_a_narrow_terminal_the_score_and_location_stay_whole(width: int) -> None:
    text = on_terminal(LONG, width)
    head = next(line for line in text.splitlines() if LONG_PATH in line)
    assert head.split() == ["0.873", "frontend", f"{LONG_PATH}:42"]
    assert "0.500" in text and "a.py:1" in text
    assert SNIPPET_SHOWN in " ".join(text.split())  # wrapped, not cut
    assert "…" not in text


def test_at_a_wide_terminal_the_table_keeps_the_location_on_one_line() -> None:
    text = on_terminal(LONG, 120)
    assert "location" in text and "repository" in text  # the table and its header
    row = next(line for line in text.splitlines() if LONG_PATH in line)
    assert "0.873" in row and "frontend" in row and f"{LONG_PATH}:42" in row
    assert all(len(line) <= 120 for line in text.splitlines())
    cells = " ".join(part.strip() for line in text.splitlines() for part in line.split("│")[4:5])
    assert " ".join(cells.split()) == f"{SNIPPET_SHOWN} def f(): pass"  # wrapped, whole


def test_a_terminal_too_narrow_even_for_the_headers_shows_no_results_without_error() -> None:
    assert "0 result(s)" in on_terminal({"results": [], "total_results": 0}, 30)


def test_hits_from_several_repositories_show_which() -> None:
    text = shown({"results": [hit("a.py", "backend"), hit("b.py", "frontend")]})
    header = next(line for line in text.splitlines() if "location" in line)
    assert "repository" in header
    assert "backend" in text and "frontend" in text


@pytest.mark.parametrize("results", [[hit("a.py", "backend"), hit("b.py", "backend")],
                                     [hit("a.py", None)], []])
def test_hits_from_one_repository_have_no_repository_column(
        results: list[dict[str, Any]]) -> None:
    text = shown({"results": results})
    assert "repository" not in text and "backend" not in text


@pytest.mark.parametrize("answer", [{"results": "nope"}, {"results": {"a": 1}},
                                    {"results": [hit("a.py", "x"), "not an object"]},
                                    {"results": [None]}, {"results": 3}])
def test_results_that_are_not_a_list_of_objects_are_a_protocol_error(
        answer: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError, match="not a list of objects") as caught:
        shown(answer)
    assert caught.value.exit_code == 4


def test_no_results_at_all_is_an_empty_table() -> None:
    assert "0 result(s)" in shown({"results": None, "total_results": 0})


def test_a_query_of_every_repository_names_it_even_when_the_hits_share_one() -> None:
    text = shown({"results": [hit("a.py", "backend")]}, spans=True)
    header = next(line for line in text.splitlines() if "location" in line)
    assert "repository" in header and "backend" in text
    assert "repository" not in shown({"results": [hit("a.py", "backend"),
                                                  hit("b.py", "docs")]}, spans=False)
