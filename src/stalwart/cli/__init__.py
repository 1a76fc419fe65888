"""The ``stalwart`` command line: one module per command."""

from __future__ import annotations


def main() -> None:
    from .main import cli

    cli()
