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
    ``keep_newlines`` (a field shown on one line must not fake a second one).
    """
    shown = str(text)
    if shown.isprintable():  # the common case: nothing to drop, and no unicodedata
        return shown
    import unicodedata

    newline = "\n" if keep_newlines else " "
    return "".join(
        " " if char == "\t" else newline if char == "\n" else char
        for char in shown
        if char in "\t\n" or unicodedata.category(char) not in DROPPED_CATEGORIES
    )


def results_table(answer: dict[str, Any], console: Console | None = None, *,
                  spans: bool | None = None) -> None:
    """Print a query answer as a table: score, file:line, first line of the snippet, and
    the repository when the query spans repositories (``spans``; by default, when the
    hits come from more than one). An answer whose results are not a list of objects is
    a :class:`ProtocolError`: nothing is printed."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    results = _results(answer)
    if spans is None:
        spans = len({printable(item.get("repository_alias", "?")) for item in results}) > 1
    console = console or Console()
    total = printable(answer.get("total_results", len(results)))
    table = Table(title=Text(f"{total} result(s)"))
    # Score and location must stay whole at any width (a pipe or CI log is 80 columns);
    # only the snippet gives way.
    table.add_column("score", justify="right", no_wrap=True, min_width=5)
    if spans:
        table.add_column("repository", overflow="fold", min_width=10)
    table.add_column("location", overflow="fold", min_width=20)
    table.add_column("snippet", overflow="ellipsis", no_wrap=True, ratio=1)
    for item in results:
        score = item.get("similarity_score")
        where = f"{item.get('file_path', '?')}:{item.get('line_number', '?')}"
        snippet = str(item.get("code_snippet", "")).strip().splitlines()
        repository = [Text(printable(item.get("repository_alias", "?")))] if spans else []
        table.add_row(Text(f"{score:.2f}" if isinstance(score, float) else printable(score)),
                      *repository, Text(printable(where)),
                      Text(printable(snippet[0] if snippet else "")))
    console.print(table)


def _results(answer: dict[str, Any]) -> list[dict[str, Any]]:
    results = answer.get("results")
    if results is None:
        return []
    if not isinstance(results, list) or not all(isinstance(item, dict) for item in results):
        raise ProtocolError("the server's query answer has no list of results (its "
                            "\"results\" is not a list of objects); check the server URL, "
                            "or use --json to see the answer")
    return results
