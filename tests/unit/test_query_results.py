"""Typed query results: the contract's fields as attributes, the rest kept as sent."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import httpx
import pytest

from cidx_auth.domain.errors import ProtocolError
from cidx_auth.domain.results import QueryHit, QueryResult
from tests.unit.conftest import World
from tests.unit.http_fakes import URL, Server, make

ANSWER = {
    "results": [
        {"file_path": "src/auth/refresh.py", "line_number": 42,
         "code_snippet": "def rotate(token):", "similarity_score": 0.93,
         "repository_alias": "backend", "language": "python", "chunk_index": 3},
        {"file_path": "docs/a.md", "line_number": 5, "code_snippet": "Tokens live.",
         "similarity_score": 1, "repository_alias": "docs"},
    ],
    "total_results": 7,
    "query_metadata": {"execution_time_ms": 3, "repositories_searched": 2},
    "warnings": ["index is stale"],
}


def test_the_contract_fields_are_typed_and_the_rest_kept_as_sent() -> None:
    result = QueryResult.from_json(ANSWER)
    first, second = result.hits
    assert first == QueryHit("src/auth/refresh.py", 42, "def rotate(token):", 0.93, "backend",
                             {"language": "python", "chunk_index": 3})
    assert (second.similarity_score, type(second.similarity_score)) == (1.0, float)
    assert second.extra == {}
    assert (result.total_results, dict(result.query_metadata)) == (
        7, {"execution_time_ms": 3, "repositories_searched": 2})
    assert result.extra == {"warnings": ["index is stale"]}
    assert (first.location, len(result), list(result)) == ("src/auth/refresh.py:42", 2,
                                                           [first, second])


def test_what_the_server_leaves_out_is_none_never_guessed() -> None:
    result = QueryResult.from_json({"results": [{"file_path": None, "commit": "abc"}]})
    (hit,) = result.hits
    assert (hit.file_path, hit.line_number, hit.code_snippet, hit.similarity_score,
            hit.repository_alias, dict(hit.extra)) == (None, None, "", None, None,
                                                       {"commit": "abc"})
    assert hit.location == "?:?"
    assert (result.total_results, result.query_metadata, result.extra) == (1, {}, {})
    empty = QueryResult.from_json({"results": None})
    assert (empty.hits, empty.total_results, bool(empty)) == ((), 0, False)
    assert QueryResult.from_json({}).hits == ()


def test_a_result_cannot_be_changed_by_whoever_holds_it() -> None:
    result = QueryResult.from_json(ANSWER)
    with pytest.raises(TypeError):
        result.extra["warnings"] = []  # type: ignore[index]
    with pytest.raises(TypeError):
        result.hits[0].extra["language"] = "go"  # type: ignore[index]
    with pytest.raises(AttributeError):
        result.hits[0].file_path = "elsewhere"  # type: ignore[misc]
    assert ANSWER["results"][0]["language"] == "python"  # type: ignore[index]


def test_a_result_is_a_value_pickled_copied_and_hashed() -> None:
    """Frozen is not enough: a ``mappingproxy`` field can be neither pickled nor copied,
    and would make ``hash`` raise. The copies are equal, still read-only, and deep."""
    result = QueryResult.from_json(ANSWER)
    for again in (pickle.loads(pickle.dumps(result)), copy.deepcopy(result),  # noqa: S301
                  copy.copy(result)):
        assert again == result and hash(again) == hash(result)
        with pytest.raises(TypeError):
            again.extra["warnings"] = []  # type: ignore[index]
        with pytest.raises(TypeError):
            again.hits[0].extra["language"] = "go"  # type: ignore[index]
    deep = copy.deepcopy(result)
    assert deep.extra["warnings"] is not result.extra["warnings"]
    assert {result, deep} == {result}  # the hash leaves the mappings (lists inside) out
    assert hash(result.hits[0]) != hash(result.hits[1])


def test_a_result_built_by_hand_is_read_only_too() -> None:
    """The constructor freezes what it is given, as ``from_json`` does: a copy, which
    the caller's later changes do not reach."""
    extra: dict[str, Any] = {"language": "python"}
    hit = QueryHit("a.py", 1, extra=extra)
    result = QueryResult([hit], 1, {"took": 2})  # type: ignore[arg-type]
    extra["language"] = "go"
    assert hit.extra == {"language": "python"} and result.hits == (hit,)
    with pytest.raises(TypeError):
        result.query_metadata["took"] = 3  # type: ignore[index]
    assert QueryHit("a.py").extra == {} and pickle.loads(pickle.dumps(hit)) == hit  # noqa: S301


def test_none_for_a_mapping_built_by_hand_is_an_empty_one() -> None:
    """As a null ``query_metadata`` in an answer is: None means there is nothing there."""
    hit = QueryHit("a.py", extra=None)  # type: ignore[arg-type]
    result = QueryResult((hit,), 1, None, None)  # type: ignore[arg-type]
    assert (hit.extra, result.query_metadata, result.extra) == ({}, {}, {})


@pytest.mark.parametrize(("answer", "words"), [
    ([], "an answer that is not a JSON object"),
    ({"results": {"file_path": "a"}}, '"results" that are not a list'),
    ({"results": ["a.py"]}, "a result that is not a JSON object"),
    ({"results": [{"file_path": 7}]}, 'a "file_path" that is int'),
    ({"results": [{"line_number": "42"}]}, 'a "line_number" that is str'),
    ({"results": [{"line_number": 4.0}]}, 'a "line_number" that is float'),
    ({"results": [{"similarity_score": True}]}, 'a "similarity_score" that is bool'),
    ({"results": [{"similarity_score": "0.9"}]}, 'a "similarity_score" that is str'),
    ({"results": [{"code_snippet": ["x"]}]}, 'a "code_snippet" that is list'),
    ({"results": [{"repository_alias": 1}]}, 'a "repository_alias" that is int'),
    ({"results": [], "total_results": "3"}, 'a "total_results" that is str'),
    ({"results": [], "query_metadata": []}, 'a "query_metadata" that is list'),
])
def test_an_answer_outside_the_contract_is_a_protocol_error(answer: Any, words: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        QueryResult.from_json(answer)
    assert str(caught.value) == (f"the server's query answer has {words}, which the CIDX API "
                                 "does not send; check the server URL, or call query_json() "
                                 "for the answer as sent")


def test_query_is_typed_and_query_json_is_the_answer_as_sent(world: World) -> None:
    server = Server(httpx.Response(200, json=ANSWER))
    with make(world, server) as cidx:
        assert cidx.query("rotate", "backend") == QueryResult.from_json(ANSWER)
        assert cidx.query_json("rotate", "backend") == ANSWER
    assert [request.url.path for request in server.requests] == ["/api/query"] * 2


async def test_the_async_client_types_its_answers_alike(world: World) -> None:
    from adapters.cidx_client import AsyncCidxClient
    from adapters.http_settings import HttpSettings

    server = Server(httpx.Response(200, json=ANSWER))
    async with AsyncCidxClient(HttpSettings(URL), world.provider, world.container.breaker(),
                               clock=world.clock,
                               transport=httpx.MockTransport(server)) as cidx:
        assert (await cidx.query("rotate")).hits[0].repository_alias == "backend"
        assert await cidx.query_json("rotate") == ANSWER


def test_a_hit_the_server_mistyped_stops_query_but_not_query_json(world: World) -> None:
    odd = {"results": [{"file_path": "a.py", "similarity_score": "high"}]}
    server = Server(httpx.Response(200, json=odd))
    with make(world, server) as cidx:
        with pytest.raises(ProtocolError, match='"similarity_score" that is str'):
            cidx.query("x")
        assert cidx.query_json("x") == odd
