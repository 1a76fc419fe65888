"""What the commands share: loading ``module:attribute`` apps, and printing for people or scripts."""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any

import click

from ..app import App


def load_app(spec: str) -> App:
    """Import ``package.module:attribute`` (or ``package.module``, attribute ``app``)."""
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.UsageError(
            f"cannot import {module_name!r} ({exc}); APP is module:attribute, importable from "
            "the current directory or PYTHONPATH"
        ) from exc
    app = getattr(module, attr or "app", None)
    if not isinstance(app, App):
        raise click.UsageError(f"{spec!r} is not a stalwart App (found {type(app).__name__})")
    return app


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, sort_keys=True))


APP_ARGUMENT = click.argument("app_spec", metavar="APP")
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
