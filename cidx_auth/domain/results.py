"""What a query answers, typed: :class:`QueryResult` holding :class:`QueryHit` s.

The CIDX server answers ``POST /api/query`` with ``{"results": [{"file_path",
"line_number", "code_snippet", "similarity_score", "repository_alias", ...}],
"total_results": n, "query_metadata": {...}}`` (``server-contract.md``). The fields
named there become attributes, each with its type checked; everything else the server
sends (fields a newer server adds, a hit's language or commit) is kept, as sent, in
``extra``, so nothing is lost by typing the answer.

A known field left out, or null, is None (a hit of a commit message may have no line):
the answer is typed, never guessed. A known field of the wrong type, or results that
are not a list of objects, is a :class:`ProtocolError`: the server is not following
the contract, and a caller could not use what it sent. Built in the core so the rule is
one, whichever client parsed the JSON; ``request``-style calls keep the JSON as it is.

Both are values: frozen, compared, pickled and deep-copied by value (the read-only
``extra`` and ``query_metadata`` travel as plain dicts and are made read-only again);
their hash leaves those two mappings out, since what the server sent there may be lists.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from cidx_auth.domain.errors import ProtocolError

HIT_FIELDS = ("file_path", "line_number", "code_snippet", "similarity_score",
              "repository_alias")
"""The fields of a hit the contract names: attributes of :class:`QueryHit`."""
RESULT_FIELDS = ("results", "total_results", "query_metadata")
"""The fields of the answer the contract names: attributes of :class:`QueryResult`."""

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class QueryHit:
    """One search hit: where it is, what it says, how well it matched.

    ``file_path``, ``line_number`` and ``repository_alias`` are None when the server did
    not say; ``similarity_score`` is a float from 0 to 1 (None when the server sent none,
    as for some text searches); ``extra`` holds every other field of the hit, as sent.
    """

    file_path: str | None
    line_number: int | None = None
    code_snippet: str = ""
    similarity_score: float | None = None
    repository_alias: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra", _frozen(self.extra))

    def __reduce__(self) -> tuple[Any, ...]:
        return _by_value(self)

    @classmethod
    def from_json(cls, item: Any) -> QueryHit:
        """A hit from one decoded JSON object of ``results``.

        Raises :class:`ProtocolError` when ``item`` is not an object or a known field
        has the wrong type."""
        if not isinstance(item, dict):
            raise _not_contract("a result that is not a JSON object")
        score = _optional(item, "similarity_score", (int, float))
        return cls(
            file_path=_optional(item, "file_path", str),
            line_number=_optional(item, "line_number", int),
            code_snippet=_optional(item, "code_snippet", str) or "",
            similarity_score=None if score is None else float(score),
            repository_alias=_optional(item, "repository_alias", str),
            extra=_rest(item, HIT_FIELDS),
        )

    @property
    def location(self) -> str:
        """``file_path:line_number``, with ``?`` for what the server did not say."""
        path = "?" if self.file_path is None else self.file_path
        return f"{path}:{'?' if self.line_number is None else self.line_number}"


@dataclass(frozen=True, slots=True)
class QueryResult:
    """The answer to a query: its hits, best first as the server ranked them.

    Iterating a result iterates its hits, and ``len`` counts them. ``total_results`` is
    the server's count (the number of hits when it sent none); ``query_metadata`` is the
    server's report on the search (timings, repositories searched), and ``extra`` every
    other top-level field, both as sent.
    """

    hits: tuple[QueryHit, ...]
    total_results: int
    query_metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hits", tuple(self.hits))
        object.__setattr__(self, "query_metadata", _frozen(self.query_metadata))
        object.__setattr__(self, "extra", _frozen(self.extra))

    def __reduce__(self) -> tuple[Any, ...]:
        return _by_value(self)

    @classmethod
    def from_json(cls, answer: Any) -> QueryResult:
        """The typed form of a decoded ``POST /api/query`` answer.

        Raises :class:`ProtocolError` when the answer is not a JSON object, its
        ``results`` are not a list of objects, or a known field has the wrong type."""
        if not isinstance(answer, dict):
            raise _not_contract("an answer that is not a JSON object")
        results = answer.get("results")
        if results is None:
            results = []
        if not isinstance(results, list):
            raise _not_contract('"results" that are not a list')
        hits = tuple(QueryHit.from_json(item) for item in results)
        total = _optional(answer, "total_results", int)
        metadata = _optional(answer, "query_metadata", dict)
        return cls(hits, len(hits) if total is None else total, metadata or _EMPTY,
                   _rest(answer, RESULT_FIELDS))

    def __iter__(self) -> Iterator[QueryHit]:
        return iter(self.hits)

    def __len__(self) -> int:
        return len(self.hits)


def _optional(item: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """``item[name]`` if it is a ``kind`` (a bool is no number), None if absent or null."""
    value = item.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise _not_contract(f'a "{name}" that is {type(value).__name__}')
    return value


def _rest(item: dict[str, Any], known: tuple[str, ...]) -> Mapping[str, Any]:
    return {name: value for name, value in item.items() if name not in known}


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only copy of ``mapping`` (the shared empty one when it is empty): a copy
    even of a read-only view, whose dict its maker could still change."""
    return MappingProxyType(dict(mapping)) if mapping else _EMPTY


def _by_value(value: QueryHit | QueryResult) -> tuple[Any, ...]:
    """``__reduce__`` for pickle and ``copy``: the class and its fields, a read-only
    mapping as a plain dict (a ``mappingproxy`` can be neither pickled nor copied)."""
    return type(value), tuple(
        dict(item) if isinstance(item, MappingProxyType) else item
        for item in (getattr(value, each.name) for each in fields(value)))


def _not_contract(what: str) -> ProtocolError:
    return ProtocolError(f"the server's query answer has {what}, which the CIDX API does "
                         "not send; check the server URL, or call query_json() for the "
                         "answer as sent")
