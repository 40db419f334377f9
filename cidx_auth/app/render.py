"""What the CLI prints that a server wrote: query results, answer bodies, error details.

A server (or a file it indexed) chooses these strings, so they are shown as plain text
and nothing else: :func:`printable` drops the characters a terminal acts on or that
change what is shown unseen (Unicode's control and format characters and the line and
paragraph separators: ESC and the rest of C0 and C1, DEL, the bidirectional overrides
and marks), and the query table hands rich :class:`~rich.text.Text` objects, which it never reads
as markup. ``pages/[id].tsx`` prints as itself, ``[link=...]`` stays text, ``[/x]``
cannot break the table. rich is imported only to draw a table: an error message or a
``request`` body needs just :func:`printable`.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from cidx_auth.domain.errors import ProtocolError

if TYPE_CHECKING:
    from rich.console import Console

DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
"""Control and format characters, line and paragraph separators: a terminal may act on
them (ESC, C1 controls), or they change what is shown without being seen (the
bidirectional overrides and marks U+200E, U+200F, U+061C; U+2028 breaks a line)."""


def printable(text: object, *, keep_newlines: bool = False) -> str:
    """``text`` as a string a terminal shows and does not act on.

    Every character of the :data:`DROPPED_CATEGORIES` is removed (a carriage return
    could overwrite what was printed, an ESC start a colour, a link, a clipboard write or
    a new window title); a tab becomes a space, and so does a newline unless
    ``keep_newlines`` (a field shown on one line must not fake a second one). A lone
    surrogate (half of a UTF-16 pair, which JSON's ``\\ud800`` can make) is no character
    and cannot be written out as UTF-8: it becomes U+FFFD, the replacement character.
    """
    shown = str(text)
    if shown.isprintable():  # the common case: nothing to drop, and no unicodedata
        return shown
    import unicodedata

    newline = "\n" if keep_newlines else " "
    return "".join(
        " " if char == "\t" else newline if char == "\n" else
        "\ufffd" if unicodedata.category(char) == "Cs" else char
        for char in shown
        if char in "\t\n" or unicodedata.category(char) not in DROPPED_CATEGORIES
    )


QUERY_FIELDS = ("score", "repository", "location", "snippet")
"""The fields of a hit, in order: one tab-separated line each into a pipe or a file."""
MIN_SNIPPET_WIDTH = 20
"""A terminal too narrow for the whole score, repository and location columns and this
much snippet gets the hits one below the other instead of a table."""


def query_fields(item: dict[str, Any], repository: str | None = None) -> tuple[str, ...]:
    """One hit as its :data:`QUERY_FIELDS`, each :func:`printable` and on one line.

    The score has three decimals (``0.873``); the repository is the hit's, else the one
    asked for (``repository``), else ``?``; the location is ``file:line``; the snippet is
    the whole snippet with every run of whitespace (newlines and tabs included) made one
    space. No field holds a tab or a newline, so none can fake a column or a line.
    """
    score = item.get("similarity_score")
    shown_score = f"{score:.3f}" if isinstance(score, float | int) and \
        not isinstance(score, bool) else printable("?" if score is None else score)
    alias = item.get("repository_alias")
    path, line = (_or_unknown(item.get(name)) for name in ("file_path", "line_number"))
    snippet = item.get("code_snippet")
    return (shown_score, _one_line(alias if alias is not None else repository or "?"),
            _one_line(f"{path}:{line}"), _one_line("" if snippet is None else snippet))


def _or_unknown(value: object) -> object:
    return "?" if value is None else value


def _one_line(text: object) -> str:
    """``text`` on one line: every run of whitespace (line breaks of every kind included:
    CR, VT, FF, NEL, U+2028, U+2029, which :func:`printable` would drop and so glue the
    words around them) made one space, then made printable."""
    return printable(" ".join(str(text).split()))


def results_table(answer: dict[str, Any], console: Console | None = None, *,
                  spans: bool | None = None, repository: str | None = None) -> None:
    """Print a query answer: tab-separated lines into a pipe or a file, a table at a terminal.

    Not at a terminal (``console.is_terminal``; without a console, whether stdout is a
    terminal): one line per hit, the four :data:`QUERY_FIELDS` separated by tabs, no
    header, nothing cut or wrapped; the repository is always there, so the columns stay
    put for ``cut`` and ``awk``. At a terminal: a table of score, file:line, snippet, and
    the repository when the query spans repositories (``spans``; by default, when the
    hits come from more than one). Score, repository and location are never cut: they
    get their whole width and only the snippet wraps; a terminal too narrow for that
    gets each hit as a line of them (long lines left to the terminal to wrap, never cut)
    with its snippet below. ``repository`` is the one asked for, if any. An answer whose
    results are not a list of objects is a :class:`ProtocolError`: nothing is printed.
    """
    results = _results(answer)
    rows = [query_fields(item, repository) for item in results]
    if not (console.is_terminal if console is not None else _stdout_is_terminal()):
        out = console.file if console is not None else sys.stdout
        out.write("".join("\t".join(row) + "\n" for row in rows))
        out.flush()
        return
    from rich.cells import cell_len
    from rich.console import Console
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    if spans is None:
        spans = len({printable(item.get("repository_alias", "?")) for item in results}) > 1
    console = console or Console()
    names = [name for name in QUERY_FIELDS if spans or name != "repository"]
    shown = [[value for name, value in zip(QUERY_FIELDS, row, strict=True) if name in names]
             for row in rows]
    total = printable(answer.get("total_results", len(results)))
    title = Text(f"{total} result(s)")
    whole = {name: max([cell_len(name), *(cell_len(row[at]) for row in shown)])
             for at, name in enumerate(names[:-1])}
    # Each column has a space either side and a rule after it, and the table one more.
    if sum(whole.values()) + MIN_SNIPPET_WIDTH + 3 * len(names) + 1 <= console.width:
        table = Table(title=title)
        for name in names[:-1]:
            table.add_column(name, justify="right" if name == "score" else "left",
                             no_wrap=True, min_width=whole[name])
        table.add_column("snippet", overflow="fold")
        for row in shown:
            table.add_row(*(Text(value) for value in row))
        console.print(table)
        return
    console.print(title)
    pad = {name: max((cell_len(row[at]) for row in shown), default=0)
           for at, name in enumerate(names[:-1])}
    for *head, snippet in shown:
        aligned = [" " * (pad[name] - cell_len(value)) + value if name == "score" else
                   value + " " * (pad[name] - cell_len(value))
                   for name, value in zip(names, head, strict=False)]
        console.print(Text("  ".join(aligned).rstrip()), soft_wrap=True)
        if snippet:
            console.print(Padding(Text(snippet, overflow="fold"), (0, 0, 0, 4)))


def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


def _results(answer: dict[str, Any]) -> list[dict[str, Any]]:
    results = answer.get("results")
    if results is None:
        return []
    if not isinstance(results, list) or not all(isinstance(item, dict) for item in results):
        raise ProtocolError("the server's query answer has no list of results (its "
                            "\"results\" is not a list of objects); check the server URL, "
                            "or use --json to see the answer")
    return results
