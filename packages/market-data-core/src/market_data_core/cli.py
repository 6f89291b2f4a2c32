"""What the command lines (``mds``, ``mdp``, ``mdo``) share: the ``--version`` option and
the one-line error they print before exiting.

Typer and Rich are imported when these are called, never by importing this module (the
CLIs already have them; ``import market_data_core`` stays light).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer
    from rich.console import Console

__all__ = ["fail", "version_callback", "version_option"]


def version_callback(distribution: str) -> Callable[[bool], None]:
    """A Typer callback printing ``DISTRIBUTION VERSION`` and exiting when the flag is set."""

    def print_version(value: bool) -> None:
        if value:
            from importlib.metadata import version  # noqa: PLC0415

            import typer  # noqa: PLC0415

            sys.stdout.write(f"{distribution} {version(distribution)}\n")
            raise typer.Exit

    return print_version


def version_option(distribution: str) -> Any:
    """The eager ``--version`` option of a CLI's callback:
    ``show_version: Annotated[bool, version_option("market-data-store")] = False``."""
    import typer  # noqa: PLC0415

    return typer.Option(
        "--version",
        callback=version_callback(distribution),
        is_eager=True,
        help="Print the distribution and its version, then exit.",
    )


def fail(console: Console, message: str, code: int = 1) -> typer.Exit:
    """Print ``error: MESSAGE`` (red, markup escaped, never wrapped) on ``console``; the
    ``typer.Exit`` of ``code`` to raise."""
    import typer  # noqa: PLC0415
    from rich.markup import escape  # noqa: PLC0415

    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)
