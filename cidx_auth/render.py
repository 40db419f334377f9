"""Readable output for query results (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def results_table(answer: dict[str, Any], console: Console | None = None) -> None:
    """Print a query answer as a table: score, file:line, first line of the snippet."""
    console = console or Console()
    results = answer.get("results") or []
    table = Table(title=f"{answer.get('total_results', len(results))} result(s)")
    # Score and location must stay whole at any width (a pipe or CI log is 80 columns);
    # only the snippet gives way.
    table.add_column("score", justify="right", no_wrap=True, min_width=5)
    table.add_column("location", overflow="fold", min_width=20)
    table.add_column("snippet", overflow="ellipsis", no_wrap=True, ratio=1)
    for item in results:
        score = item.get("similarity_score")
        where = f"{item.get('file_path', '?')}:{item.get('line_number', '?')}"
        snippet = str(item.get("code_snippet", "")).strip().splitlines()
        table.add_row(f"{score:.2f}" if isinstance(score, float) else str(score),
                      where, snippet[0] if snippet else "")
    console.print(table)
