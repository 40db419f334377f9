"""`POST /api/query` validates like the real `SemanticQueryRequest`: types, limits,
literals, unknown fields ignored, and the real 422 shape (which echoes the input)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from refserver.config import ServerConfig
from tests.refserver.test_refserver_protected import access_token, query

CONFIG = ServerConfig(users={"alice": "secret"})

ACCEPTED: list[dict[str, Any]] = [
    {"limit": 1}, {"limit": 100}, {"min_score": 0}, {"min_score": 1.0},
    {"edit_distance": 0}, {"edit_distance": 3}, {"snippet_lines": 0}, {"snippet_lines": 50},
    {"repository_alias": "backend"}, {"query_text": "x" * 1000},
    {"search_mode": "hybrid"}, {"accuracy": "fast"}, {"chunk_type": "commit_diff"},
    {"file_extensions": [".py", ".md"]}, {"diff_type": "added"}, {"diff_type": ["added"]},
    {"case_sensitive": True, "fuzzy": False, "regex": True, "time_range_all": True},
    {"language": "python", "exclude_language": "md", "path_filter": "src/*",
     "exclude_path": "docs/*", "time_range": "2024-01-01..2024-12-31", "at_commit": "HEAD",
     "author": "alice"},
    {"min_scor": 2, "colour": "blue"},  # unknown fields: ignored, as the real server does
]
# (body, the error's loc after "body", its type)
REFUSED: list[tuple[dict[str, Any], list[Any], str]] = [
    ({"limit": 0}, ["limit"], "greater_than_equal"),
    ({"limit": 101}, ["limit"], "less_than_equal"),
    ({"min_score": -0.1}, ["min_score"], "greater_than_equal"),
    ({"min_score": 1.5}, ["min_score"], "less_than_equal"),
    ({"edit_distance": 4}, ["edit_distance"], "less_than_equal"),
    ({"snippet_lines": 51}, ["snippet_lines"], "less_than_equal"),
    ({"snippet_lines": -1}, ["snippet_lines"], "greater_than_equal"),
    ({"query_text": "x" * 1001}, ["query_text"], "string_too_long"),
    ({"repository_alias": "r" * 256}, ["repository_alias"], "string_too_long"),
    ({"search_mode": "both"}, ["search_mode"], "literal_error"),
    ({"accuracy": "low"}, ["accuracy"], "literal_error"),
    ({"chunk_type": "diff"}, ["chunk_type"], "literal_error"),
    ({"fuzzy": "yes"}, ["fuzzy"], "bool_type"),
    ({"limit": True}, ["limit"], "int_type"),
    ({"file_extensions": ".py"}, ["file_extensions"], "list_type"),
    ({"file_extensions": [".py", 3]}, ["file_extensions", 1], "string_type"),
    ({"diff_type": 5}, ["diff_type"], "string_type"),
    ({"author": 5}, ["author"], "string_type"),
]


@pytest.mark.parametrize("body", ACCEPTED)
async def test_values_within_the_model_are_answered(client: httpx.AsyncClient,
                                                    body: dict[str, Any]) -> None:
    response = await query(client, await access_token(client), **body)
    assert response.status_code == 200, response.text
    assert isinstance(response.json()["results"], list)


@pytest.mark.parametrize(("body", "where", "kind"), REFUSED)
async def test_values_outside_the_model_get_the_real_422(
    client: httpx.AsyncClient, body: dict[str, Any], where: list[Any], kind: str
) -> None:
    response = await query(client, await access_token(client), **body)
    assert response.status_code == 422
    answer = response.json()
    assert answer["error"] == "validation_error"
    [item] = answer["detail"]
    assert (item["loc"], item["type"]) == (["body", *where], kind)
    assert item["input"] == body[where[0]]  # the real server echoes it: a client must not
    assert item["msg"].startswith(("Input should", "String should"))


async def test_a_literal_error_names_the_allowed_values(client: httpx.AsyncClient) -> None:
    response = await query(client, await access_token(client), search_mode="both")
    assert response.json()["detail"][0]["msg"] == "Input should be 'semantic', 'fts' or 'hybrid'"


async def test_the_last_query_body_and_the_count_are_kept(client: httpx.AsyncClient) -> None:
    token = await access_token(client)
    assert (await client.get("/_admin/last-query")).json() == {"body": None}
    await query(client, token, repository_alias="docs", limit=500)  # refused, still kept
    await query(client, token, min_scor=0.5)
    assert (await client.get("/_admin/last-query")).json() == {
        "body": {"query_text": "refresh token", "min_scor": 0.5}}
    assert (await client.get("/_admin/stats")).json()["totals"]["queries"] == 2
    await client.post("/_admin/reset")
    assert (await client.get("/_admin/last-query")).json() == {"body": None}
    assert (await client.get("/_admin/stats")).json()["totals"]["queries"] == 0


async def test_an_unauthenticated_query_is_not_counted(client: httpx.AsyncClient) -> None:
    await client.post("/api/query", json={"query_text": "x"})
    assert (await client.get("/_admin/stats")).json()["totals"]["queries"] == 0
