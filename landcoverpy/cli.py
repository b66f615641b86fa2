"""The ``landcoverpy`` command line. Settings are read here, once, and passed down."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from landcoverpy import __version__
from landcoverpy.config import Settings, load_settings
from landcoverpy.errors import LandcoverError
from landcoverpy.logsetup import configure_logging

log = logging.getLogger("landcoverpy")

app = typer.Typer(
    help="Scalable land use / land cover mapping: acquire, composite, dataset, train, classify.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


class _State:
    settings: Settings | None = None


state = _State()


def settings() -> Settings:
    if state.settings is None:
        state.settings = load_settings()
    return state.settings


def handle_errors(fn: F) -> F:
    """Turn our own errors into a one-line message and exit code 1 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LandcoverError as exc:
            log.debug("failure", exc_info=True)
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def main(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-vv for debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
) -> None:
    configure_logging(-1 if quiet else verbose)


@app.command()
@handle_errors
def version() -> None:
    """Print the landcoverpy version."""
    typer.echo(__version__)


@app.command()
@handle_errors
def status() -> None:
    """Show which store, catalog and cluster are configured, and what the catalog holds.

    Exits non-zero with a clear message when a configured server is unreachable.
    """
    from landcoverpy.catalog import open_catalog
    from landcoverpy.pipeline.cluster import check_scheduler, describe_cluster
    from landcoverpy.storage import open_store

    cfg = settings()
    store = open_store(cfg)
    catalog = open_catalog(cfg)
    typer.echo(f"landcoverpy {__version__}")
    typer.echo(f"store:   {store.describe()}")
    typer.echo(f"catalog: {catalog.describe()}")
    typer.echo(f"cluster: {describe_cluster(cfg)}")
    sched = check_scheduler(cfg)
    if sched:
        typer.echo(f"         {sched['workers']} worker(s) connected")
    buckets = store.list_buckets()
    typer.echo(f"buckets: {', '.join(buckets) if buckets else '(none yet)'}")
    typer.echo("catalog records:")
    for name, count in catalog.counts().items():
        typer.echo(f"  {name:<11} {count}")
    catalog.close()


def run() -> None:  # pragma: no cover - console entry point alias
    app(prog_name="landcoverpy")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
