"""``stalwart migrate APP``: bring the backend's stored schema up to this version.

Only backends with a schema of their own (PostgreSQL) have migrations; the others create
what they need on first use, and this command says so.
"""

from __future__ import annotations

import click

from ..errors import StalwartError
from .common import APP_ARGUMENT, emit_json, load_app
from .render import user_errors


@click.command("migrate")
@APP_ARGUMENT
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@user_errors
def command(app_spec: str, as_json: bool) -> None:
    """Run the backend's schema migrations, if it has any."""
    app = load_app(app_spec)
    try:
        backend = app.open_backend()
    except StalwartError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        migrate = getattr(backend, "migrate", None)
        if not callable(migrate):
            message = (f"nothing to migrate for this backend ({type(backend).__name__} at "
                       f"{backend.url}): it creates its schema itself on first use")
            if as_json:
                emit_json({"backend": backend.url, "migrated": False, "message": message})
            else:
                click.echo(message)
            return
        try:
            result = migrate()
        except StalwartError as exc:
            raise click.ClickException(str(exc)) from exc
        if as_json:
            emit_json({"backend": backend.url, "migrated": True, "result": result})
        else:
            detail = f": {result}" if result not in (None, "") else ""
            click.echo(f"migrated {backend.url}{detail}")
    finally:
        backend.close()
