"""What a valid query is: the CIDX server's ``SemanticQueryRequest``, checked here first.

The server drops a field it does not know without a word (``min_scor=0.5`` searches
with no score floor at all), and a value outside its limits costs a token, a request
and a 422 before the user hears of it. So the client checks both before anything is
sent: :class:`QueryRequest` refuses an unknown name and every value the server's model
would refuse, with :class:`BadQuery` (exit 2) naming the field and what it takes.

The limits below are the server model's (``server-contract.md``), in one place; the
CLI and both API clients build a ``QueryRequest`` and never check a value themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from cidx_auth.domain.errors import ConfigurationError
from cidx_auth.domain.text import is_utf8

SEARCH_MODES = ("semantic", "fts", "hybrid")
ACCURACIES = ("fast", "balanced", "high")
CHUNK_TYPES = ("commit_message", "commit_diff")
MAX_QUERY_TEXT = 1000
MAX_REPOSITORY_ALIAS = 255
NUMBER_LIMITS: dict[str, tuple[float, float]] = {
    "limit": (1, 100),
    "min_score": (0.0, 1.0),
    "edit_distance": (0, 3),
    "snippet_lines": (0, 50),
}
DEFAULT_LIMIT = 10


class BadQuery(ConfigurationError):
    """A query option the server would refuse or ignore; ``field`` is its body name."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"query option {field}: {reason}")
        self.field = field
        self.reason = reason


def _query_text(name: str, value: Any) -> str:
    if isinstance(value, str) and not value.strip():
        raise BadQuery(name, "needs some text to search for")
    text = _text(name, value)
    if len(text) > MAX_QUERY_TEXT:
        raise BadQuery(name, f"{len(text)} characters; the server takes 1 to {MAX_QUERY_TEXT}")
    return text


def _alias(name: str, value: Any) -> str:
    alias = _text(name, value)
    if len(alias) > MAX_REPOSITORY_ALIAS:
        raise BadQuery(name, f"{len(alias)} characters; an alias has at most "
                             f"{MAX_REPOSITORY_ALIAS} (leave it out to search every repository)")
    return alias


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise BadQuery(name, f"must be text, not {type(value).__name__}")
    if not value:
        raise BadQuery(name, "is empty; leave it out instead")
    if not is_utf8(value):
        raise BadQuery(name, "is not valid UTF-8 text (check the terminal's encoding)")
    return value


def _number(name: str, value: Any) -> Any:
    low, high = NUMBER_LIMITS[name]
    whole = isinstance(low, int)  # int bounds: a whole number; float bounds: any number
    kind = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, int if whole else int | float) \
            or not low <= value <= high:  # NaN compares false: refused too
        raise BadQuery(name, f"must be {kind} from {low:g} to {high:g}")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadQuery(name, f"must be true or false, not {type(value).__name__}")
    return value


def _choice(choices: tuple[str, ...]) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if value not in choices:
            raise BadQuery(name, f"must be one of {', '.join(choices)}")
        return str(value)
    return check


def _texts(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise BadQuery(name, "must be a list of text")
    if not value:
        raise BadQuery(name, "is an empty list; leave it out instead")
    return tuple(_text(name, item) for item in value)


def _text_or_texts(name: str, value: Any) -> str | tuple[str, ...]:
    return _text(name, value) if isinstance(value, str) else _texts(name, value)


_RULES: dict[str, Callable[[str, Any], Any]] = {
    "query_text": _query_text,
    "repository_alias": _alias,
    **{name: _number for name in NUMBER_LIMITS},
    **{name: _flag for name in ("case_sensitive", "fuzzy", "regex", "time_range_all")},
    "search_mode": _choice(SEARCH_MODES),
    "accuracy": _choice(ACCURACIES),
    "chunk_type": _choice(CHUNK_TYPES),
    "file_extensions": _texts,
    "diff_type": _text_or_texts,
}
"""Each field's check; a field not named here is an optional non-empty string."""

@dataclass(frozen=True, slots=True)
class QueryRequest:
    """The body of ``POST /api/query``; unset options (None) are left to the server.
    Raises :class:`BadQuery` (a ``ConfigurationError``) for a value the server would
    refuse, naming the field.

    ``repository_alias`` None searches every repository the user can see. Lists are
    kept as tuples, so a request is immutable and can be compared.
    """

    query_text: str
    repository_alias: str | None = None
    limit: int = DEFAULT_LIMIT
    min_score: float | None = None
    file_extensions: Sequence[str] | None = None
    search_mode: str | None = None
    case_sensitive: bool | None = None
    fuzzy: bool | None = None
    edit_distance: int | None = None
    snippet_lines: int | None = None
    language: str | None = None
    path_filter: str | None = None
    exclude_language: str | None = None
    exclude_path: str | None = None
    accuracy: str | None = None
    regex: bool | None = None
    time_range: str | None = None
    time_range_all: bool | None = None
    at_commit: str | None = None
    diff_type: str | Sequence[str] | None = None
    author: str | None = None
    chunk_type: str | None = None

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is None and spec.name != "query_text":
                continue
            rule: Callable[[str, Any], Any] = _RULES.get(spec.name, _text)
            checked = rule(spec.name, value)
            if checked is not value:
                object.__setattr__(self, spec.name, checked)

    @classmethod
    def build(cls, text: str, repo: str | None = None,
              options: Mapping[str, Any] | None = None) -> QueryRequest:
        """A request from the text, an optional alias and keyword options by body name;
        an unknown name is refused rather than dropped (the server would drop it).
        Raises :class:`BadQuery` for an unknown name or a bad value."""
        options = dict(options or {})
        for name in options:
            if name not in OPTION_NAMES:
                raise BadQuery(name, _unknown(name))
        return cls(text, repo, **options)

    def to_body(self) -> dict[str, Any]:
        """The JSON body: the text, the limit and every option that is set."""
        body: dict[str, Any] = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is not None:
                body[spec.name] = list(value) if isinstance(value, tuple) else value
        return body


def _unknown(name: str) -> str:
    import difflib  # only for a mistake: the CLI imports this module for every command

    if name in ("query_text", "repository_alias"):
        return "is given on its own: the text as the first argument, the alias as `repo`"
    close = difflib.get_close_matches(name, OPTION_NAMES, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"not an option of the server's query{hint}; it would be ignored, not applied"


OPTION_NAMES = tuple(spec.name for spec in fields(QueryRequest)
                     if spec.name not in ("query_text", "repository_alias"))
"""The keyword options a query takes (the text and the alias are passed on their own)."""
