"""The ``cidx-auth`` command line: the composition root users run."""

from __future__ import annotations

import sys

import click

from cidx_auth import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cidx-auth")
def cli() -> None:
    """Token management for the CIDX client: stored, refreshed, never expired."""


@cli.command()
@click.option("--hours", type=click.FloatRange(0.1, 1000), default=8.0, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
def simulate(hours: float, seed: int) -> None:
    """Simulate hours of use in memory on a fake clock (no network, no files)."""
    from cidx_auth.simulate import simulate as run

    report, counts = run(hours, seed)
    click.echo(f"simulated {report.hours:g} h: {report.operations} token operations")
    for name, count in sorted(counts.items()):
        click.echo(f"  {name:<20} {count}")
    click.echo(
        f"failed operations: {report.failed}, unusable tokens: {report.unusable_tokens}, "
        f"replays: {report.replays}"
    )
    sys.exit(0 if report.ok else 1)


def main() -> None:
    """Console-script entry point."""
    cli()
