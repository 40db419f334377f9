"""The query model: every field's limits on both sides, unknown names, the body it makes,
and the API clients refusing a bad query before anything is sent."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from adapters.cidx_client import AsyncCidxClient
from adapters.http_settings import HttpSettings
from cidx_auth.domain.errors import ConfigurationError
from cidx_auth.domain.query import ACCURACIES, OPTION_NAMES, BadQuery, QueryRequest, _choice
from cidx_auth.service.api_calls import query_call
from tests.unit.conftest import World
from tests.unit.http_fakes import TYPED, URL, Server, make

NOT_UTF8 = "caf\udce9"  # a Latin-1 byte from the terminal, as Python decodes it

# (field, accepted values, refused values): each limit from both sides.
LIMITS: list[tuple[str, list[Any], list[Any]]] = [
    ("query_text", ["x", "x" * 1000, " a "], ["", "   ", "x" * 1001, 5, None, NOT_UTF8]),
    ("repository_alias", ["a", "r" * 255], ["", "r" * 256, 7]),
    ("limit", [1, 100], [0, 101, -1, 10.0, True, "10"]),
    ("min_score", [0, 0.0, 1, 1.0, 0.5], [-0.001, 1.001, float("nan"), float("inf"), True,
                                           "0.5"]),
    ("edit_distance", [0, 3], [-1, 4, 1.5, False]),
    ("snippet_lines", [0, 50], [-1, 51, 2.0]),
    ("search_mode", ["semantic", "fts", "hybrid"], ["Semantic", "both", "", 1]),
    ("accuracy", ["fast", "balanced", "high"], ["low", "HIGH", ""]),
    ("chunk_type", ["commit_message", "commit_diff"], ["commit", "diff", ""]),
    *[(flag, [True, False], [1, 0, "true", "yes"])
      for flag in ("case_sensitive", "fuzzy", "regex", "time_range_all")],
    ("file_extensions", [[".py"], (".py", "ts")], [".py", [], [".py", ""], [3], "py,ts",
                                                   [NOT_UTF8]]),
    ("diff_type", ["added", ["added", "deleted"]], ["", [], ["added", 2], 5]),
    *[(text, ["x"], ["", 3, ["x"], NOT_UTF8])
      for text in ("language", "path_filter", "exclude_language", "exclude_path",
                   "time_range", "at_commit", "author")],
]
CASES_ACCEPTED = [(field, value) for field, ok, _ in LIMITS for value in ok]
CASES_REFUSED = [(field, value) for field, _, bad in LIMITS for value in bad]


def build(field: str, value: Any) -> QueryRequest:
    fields: dict[str, Any] = {"query_text": "token refresh", field: value}
    return QueryRequest(**fields)


def test_the_table_covers_every_field() -> None:
    assert {field for field, _, _ in LIMITS} == {"query_text", "repository_alias",
                                                 *OPTION_NAMES}
    assert len(OPTION_NAMES) == 20


@pytest.mark.parametrize(("field", "value"), CASES_ACCEPTED)
def test_a_value_within_the_limits_goes_into_the_body(field: str, value: Any) -> None:
    body = build(field, value).to_body()
    assert body[field] == (list(value) if isinstance(value, tuple | list) else value)


@pytest.mark.parametrize(("field", "value"), CASES_REFUSED)
def test_a_value_outside_the_limits_is_refused_naming_the_field(field: str,
                                                                 value: Any) -> None:
    with pytest.raises(BadQuery) as caught:
        build(field, value)
    assert caught.value.field == field and caught.value.exit_code == 2
    assert str(caught.value).startswith(f"query option {field}: ")


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("query_text", "   ", "needs some text to search for"),
    ("repository_alias", "r" * 256, "256 characters; an alias has at most 255 "
                                    "(leave it out to search every repository)"),
    ("language", 3, "must be text, not int"),
    ("author", "", "is empty; leave it out instead"),
    ("path_filter", NOT_UTF8, "is not valid UTF-8 text (check the terminal's encoding)"),
    ("limit", 999, "must be a whole number from 1 to 100"),
    ("min_score", 999, "must be a number from 0 to 1"),
    ("edit_distance", 999, "must be a whole number from 0 to 3"),
    ("snippet_lines", 999, "must be a whole number from 0 to 50"),
    ("fuzzy", 1, "must be true or false, not int"),
    ("search_mode", 999, "must be one of semantic, fts, hybrid"),
    ("accuracy", 999, "must be one of fast, balanced, high"),
    ("chunk_type", 999, "must be one of commit_message, commit_diff"),
    ("file_extensions", ".py", "must be a list of text"),
    ("diff_type", [], "is an empty list; leave it out instead"),
])
def test_the_message_says_what_the_field_takes(field: str, value: Any, reason: str) -> None:
    with pytest.raises(BadQuery) as caught:
        build(field, value)
    assert caught.value.reason == reason  # the CLI prints it after its own option name
    assert str(caught.value) == f"query option {field}: {reason}"


def test_a_choice_keeps_a_listed_value_and_refuses_another_listing_them() -> None:
    # The model's choice checks are made once, at import; this one is made here, so a
    # change to how they are made is seen too.
    check = _choice(ACCURACIES)
    assert check("accuracy", "high") == "high"
    with pytest.raises(BadQuery) as caught:
        check("accuracy", "low")
    assert (caught.value.field, caught.value.reason) == (
        "accuracy", "must be one of fast, balanced, high")


def test_an_overlong_text_is_measured_not_echoed() -> None:
    with pytest.raises(BadQuery) as caught:
        QueryRequest("secret-ish " * 100)
    assert "1100 characters" in str(caught.value) and "1 to 1000" in str(caught.value)
    assert "secret-ish" not in str(caught.value)


def test_a_minimal_request_sends_text_and_limit_only() -> None:
    assert QueryRequest("x").to_body() == {"query_text": "x", "limit": 10}
    assert QueryRequest("x", "backend", limit=3).to_body() == {
        "query_text": "x", "repository_alias": "backend", "limit": 3}


def test_a_false_flag_set_on_purpose_is_sent() -> None:
    assert QueryRequest("x", fuzzy=False, regex=True).to_body() == {
        "query_text": "x", "limit": 10, "fuzzy": False, "regex": True}


def test_lists_are_kept_as_tuples_and_sent_as_lists() -> None:
    request = QueryRequest("x", file_extensions=[".py", ".ts"], diff_type=["added"])
    assert request.file_extensions == (".py", ".ts") and request.diff_type == ("added",)
    assert request == QueryRequest("x", file_extensions=(".py", ".ts"), diff_type=("added",))
    assert request.to_body()["file_extensions"] == [".py", ".ts"]


@pytest.mark.parametrize(("name", "hint"), [("min_scor", " (did you mean min_score?)"),
                                            ("languages", " (did you mean language?)"),
                                            ("colour", "")])
def test_an_unknown_name_is_refused_with_the_closest_known_one(name: str, hint: str) -> None:
    with pytest.raises(BadQuery) as caught:
        QueryRequest.build("x", None, {name: 0.5})
    assert caught.value.field == name
    assert caught.value.reason == (
        f"not an option of the server's query{hint}; it would be ignored, not applied")


@pytest.mark.parametrize("name", ["query_text", "repository_alias"])
def test_text_and_alias_are_not_options_but_say_where_they_go(name: str) -> None:
    with pytest.raises(BadQuery) as caught:
        QueryRequest.build("x", None, {name: "y"})
    assert caught.value.reason == (
        "is given on its own: the text as the first argument, the alias as `repo`")


def test_build_passes_every_known_option() -> None:
    request = QueryRequest.build("x", "docs", {"limit": 5, "min_score": 0.25,
                                               "search_mode": "hybrid"})
    assert request == QueryRequest("x", "docs", limit=5, min_score=0.25, search_mode="hybrid")


@pytest.mark.parametrize("call", [
    lambda c: c.query("x", "backend", min_scor=0.5),
    lambda c: c.query("x" * 1001),
    lambda c: c.query("x", limit=0),
    lambda c: c.query("x", search_mode="both"),
    lambda c: c.query(QueryRequest("x"), "backend"),
    lambda c: c.query(QueryRequest("x"), limit=5),
])
def test_the_client_refuses_before_any_request(world: World, call: Any) -> None:
    server = Server()
    with pytest.raises(ConfigurationError):
        call(make(world, server))
    assert server.requests == []


def test_the_client_sends_every_option_and_searches_everywhere_without_a_repo(
    world: World
) -> None:
    server = Server()
    options: dict[str, Any] = {
        "limit": 7, "min_score": 0.5, "file_extensions": [".py"], "search_mode": "fts",
        "case_sensitive": True, "fuzzy": True, "edit_distance": 2, "snippet_lines": 0,
        "language": "python", "path_filter": "src/*", "exclude_language": "md",
        "exclude_path": "docs/*", "accuracy": "high", "regex": False,
        "time_range": "2024-01-01..2024-12-31", "time_range_all": False,
        "at_commit": "abc123", "diff_type": ["added"], "author": "alice",
        "chunk_type": "commit_diff"}
    assert set(options) == set(OPTION_NAMES)
    assert make(world, server).query("x", **options) == TYPED
    assert server.body() == {"query_text": "x", **options}
    assert make(world, server).query(QueryRequest("y", "docs")) == TYPED
    assert server.body() == {"query_text": "y", "repository_alias": "docs", "limit": 10}


def test_query_call_takes_a_request_object_as_it_is() -> None:
    request = QueryRequest("x", "backend", accuracy="fast")
    assert query_call(request).body == request.to_body()


async def test_the_async_client_refuses_an_unknown_name_and_sends_the_rest(
    world: World
) -> None:
    server = Server()
    async with AsyncCidxClient(HttpSettings(URL), world.provider, world.container.breaker(),
                               clock=world.clock, transport=httpx.MockTransport(server)) as cidx:
        with pytest.raises(BadQuery, match="min_score"):
            await cidx.query("x", "backend", min_scor=0.5)
        assert server.requests == []
        assert await cidx.query("x", snippet_lines=50, fuzzy=True) == TYPED
    assert server.body() == {"query_text": "x", "limit": 10, "snippet_lines": 50,
                             "fuzzy": True}
