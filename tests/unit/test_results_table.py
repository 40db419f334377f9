"""The query table: a repository column only when the hits span repositories, and an
answer that is not a list of results refused as a protocol error, not a crash."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from cidx_auth.domain.errors import ProtocolError
from cidx_auth.render import results_table


def hit(path: str, repository: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {"file_path": path, "line_number": 1, "code_snippet": "def f():",
                            "similarity_score": 0.5}
    if repository is not None:
        item["repository_alias"] = repository
    return item


def shown(answer: dict[str, Any], spans: bool | None = None) -> str:
    out = io.StringIO()
    results_table(answer, Console(file=out, width=200, color_system=None), spans=spans)
    return out.getvalue()


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
