"""Request-body checks that answer the way the real server's 422s look.

The real server validates bodies with pydantic and wraps the errors as
`{"error": "validation_error", "message": ..., "detail": [...]}`. This is a
small stand-in for the handful of field shapes the contract uses, with the
same error `type` and `msg` strings, so a client's parser meets the real
thing. Like pydantic, an unknown field is ignored. Types are checked strictly (pydantic's
lax mode would also take "10" or 10.0 for an integer, "true" or 1 for a flag): the
client sends only real types, so nothing depends on the difference. The real server echoes each
offending value as `input`; here only routes that ask for it (the query) do, so
that a client shown to print no `input` is tested against one, while the login
route never sends a password back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

ErrorItem = dict[str, Any]


class ValidationFailed(Exception):
    """A request body the server will not process; answered with 422."""

    def __init__(self, errors: list[ErrorItem]) -> None:
        super().__init__(f"{len(errors)} validation error(s)")
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Field:
    """One expected body field; `kind` is str, int, float, bool, list (of str), or a
    tuple of these for a union; `choices` makes it a literal."""

    name: str
    kind: type | tuple[type, ...]
    required: bool = True
    min_length: int | None = None
    max_length: int | None = None
    ge: float | None = None
    le: float | None = None
    default: Any = None
    choices: tuple[str, ...] = ()

    def check(self, value: Any) -> ErrorItem | None:
        """The error for `value`, or None when it is acceptable."""
        loc: list[Any] = ["body", self.name]
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        if not any(_has_kind(value, kind) for kind in kinds):
            return _error(loc, *_KIND_ERRORS[kinds[0]])
        if isinstance(value, list):
            for index, item in enumerate(value):
                if not isinstance(item, str):
                    return _error([*loc, index], *_KIND_ERRORS[str])
        if self.choices and value not in self.choices:
            expected = " or ".join([", ".join(f"'{c}'" for c in self.choices[:-1]),
                                    f"'{self.choices[-1]}'"])
            return _error(loc, "literal_error", f"Input should be {expected}",
                          {"expected": expected})
        if self.min_length is not None and len(value) < self.min_length:
            suffix = "" if self.min_length == 1 else "s"
            msg = f"String should have at least {self.min_length} character{suffix}"
            return _error(loc, "string_too_short", msg, {"min_length": self.min_length})
        if self.max_length is not None and len(value) > self.max_length:
            msg = f"String should have at most {self.max_length} characters"
            return _error(loc, "string_too_long", msg, {"max_length": self.max_length})
        if self.ge is not None and value < self.ge:
            msg = f"Input should be greater than or equal to {self.ge:g}"
            return _error(loc, "greater_than_equal", msg, {"ge": self.ge})
        if self.le is not None and value > self.le:
            msg = f"Input should be less than or equal to {self.le:g}"
            return _error(loc, "less_than_equal", msg, {"le": self.le})
        return None


_KIND_ERRORS: dict[type, tuple[str, str]] = {
    str: ("string_type", "Input should be a valid string"),
    int: ("int_type", "Input should be a valid integer"),
    float: ("float_type", "Input should be a valid number"),
    bool: ("bool_type", "Input should be a valid boolean"),
    list: ("list_type", "Input should be a valid list"),
}


def _has_kind(value: Any, kind: type) -> bool:
    # bool is an int subclass in Python, but JSON true is not a number.
    if kind is bool or isinstance(value, bool):
        return isinstance(value, bool) and kind is bool
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


def _error(loc: list[Any], kind: str, msg: str, ctx: dict[str, Any] | None = None) -> ErrorItem:
    item: ErrorItem = {"type": kind, "loc": loc, "msg": msg}
    if ctx is not None:
        item["ctx"] = ctx
    return item


async def read_body(request: Request, fields: Sequence[Field], *,
                    echo_input: bool = False) -> dict[str, Any]:
    """Parse and check a JSON object body; raise `ValidationFailed` on any problem.
    With `echo_input`, each error carries the offending value, as pydantic's do."""
    return check_fields(await decoded_body(request), fields, echo_input=echo_input)


async def decoded_body(request: Request) -> Any:
    """The body as JSON; `ValidationFailed` when it is empty or not JSON."""
    raw = await request.body()
    if not raw.strip():
        raise ValidationFailed([_error(["body"], "missing", "Field required")])
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        position = exc.pos if isinstance(exc, json.JSONDecodeError) else 0
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "invalid UTF-8"
        raise ValidationFailed([_error(["body", position], "json_invalid", "JSON decode error",
                                       {"error": reason})]) from exc


def check_fields(body: Any, fields: Sequence[Field], *,
                 echo_input: bool = False) -> dict[str, Any]:
    """Check an already-decoded body against `fields`; unknown keys are ignored."""
    if not isinstance(body, dict):
        msg = "Input should be a valid dictionary or object to extract fields from"
        raise ValidationFailed([_error(["body"], "model_attributes_type", msg)])
    values: dict[str, Any] = {}
    errors: list[ErrorItem] = []
    for field in fields:
        value = body.get(field.name)
        if field.name not in body or (value is None and not field.required):
            if field.required:
                errors.append(_error(["body", field.name], "missing", "Field required"))
            values[field.name] = field.default
            continue
        problem = field.check(value)
        if problem is None:
            values[field.name] = value
        else:
            errors.append({**problem, "input": value} if echo_input else problem)
    if errors:
        raise ValidationFailed(errors)
    return values


def validation_response(errors: list[ErrorItem]) -> JSONResponse:
    """The 422 answer for `errors`, shaped like the real server's."""
    body = {"error": "validation_error", "message": "Request validation failed",
            "detail": errors}
    return JSONResponse(body, status_code=422)
