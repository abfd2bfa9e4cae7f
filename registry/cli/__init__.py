"""The ``adapter-registry`` command line: thin click commands over :mod:`registry`.

One error boundary (:class:`RegistryGroup`) turns :class:`~registry.errors.RegistryError` into
``Error: …`` plus a hint and a non-zero exit; usage errors exit 2. Heavy libraries (torch,
transformers, adapters, huggingface_hub) are imported inside the commands that need them, so
``adapter-registry list`` answers fast.

One module per command group (:mod:`.admin`, :mod:`.bases`, :mod:`.browse`, :mod:`.meta`,
:mod:`.training`, :mod:`.fusing`, :mod:`.continual`, :mod:`.hub`, :mod:`.serve`); output helpers
in :mod:`.output`, the options generated from the config dataclasses in :mod:`.options`. Nothing
imports this package back.
"""

from __future__ import annotations

import traceback
import warnings
from pathlib import Path
from typing import Any, NoReturn

import click

from .. import __version__
from ..errors import RegistryError
from ..settings import debug_enabled
from ..store.commits import committed_writes
from . import admin, bases, browse, continual, drift_reports, fusing, hub, meta, serve, training


class CliError(click.ClickException):
    """A registry error shown as ``Error: message`` and ``Hint: next step``."""

    def __init__(self, err: RegistryError) -> None:
        super().__init__(err.message)
        self.hint = err.hint
        self.exit_code = err.exit_code  # type: ignore[misc]

    def format_message(self) -> str:
        return self.message + (f"\nHint: {self.hint}" if self.hint else "")


class RegistryGroup(click.Group):
    """A click group whose commands report RegistryErrors without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        before = committed_writes()
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_note
                return super().invoke(ctx)
        except RegistryError as err:
            if debug_enabled():
                traceback.print_exc()
            raise CliError(err) from err
        except KeyboardInterrupt as err:
            if committed_writes() == before:
                click.echo("Interrupted: nothing was registered.", err=True)
            else:  # the interrupt came after a commit: say so, not "nothing" (#16 finding 10)
                click.echo(
                    "Interrupted after the registry recorded this command's changes: they are "
                    "complete (each commit is all or nothing).\n"
                    "Hint: See what is there: adapter-registry list",
                    err=True,
                )
            raise click.exceptions.Exit(130) from err
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as err:
            # No traceback reaches a user unless asked for: a bug still ends in one clear line.
            if debug_enabled():
                traceback.print_exc()
            raise CliError(
                RegistryError(
                    f"Unexpected {type(err).__name__}: {err}",
                    hint="Rerun with ADAPTER_REGISTRY_DEBUG=1 for the traceback; please report it.",
                )
            ) from err


def _show_note(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """Print a warning as one ``Note:`` line on stderr (no file and line of code); with
    ``--json`` the output stays the JSON alone, and ``--quiet`` prints no notes."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or not (ctx.params.get("as_json") or ctx.params.get("quiet")):
        click.echo(f"Note: {message}", err=True)


def _check_home(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    # An empty --home (or ADAPTER_REGISTRY_HOME="") would silently mean the current folder.
    if value is None:
        return None
    if not value.strip():
        raise click.BadParameter("the registry home must be a folder path, not empty")
    return Path(value)


@click.group(cls=RegistryGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    envvar="ADAPTER_REGISTRY_HOME",
    callback=_check_home,
    help="Registry folder (default ~/.adapter-registry).",
)
@click.option(
    "--db", envvar="ADAPTER_REGISTRY_DB", help="SQLAlchemy database URL (default: SQLite in HOME)."
)
@click.option(
    "--artifacts",
    envvar="ADAPTER_REGISTRY_ARTIFACTS",
    help="Artifact store: a folder or an fsspec URL such as s3://bucket/prefix "
    "(default: HOME/artifacts). A team shares one, with one database.",
)
@click.version_option(__version__, prog_name="adapter-registry")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, db: str | None, artifacts: str | None) -> None:
    """Register, train, fuse and share task adapters on frozen encoders.

    \b
    Example:
      adapter-registry init
      adapter-registry train sentiment --data data/books --base ./minilm
      adapter-registry list
    """
    ctx.obj = {"home": home, "db": db, "artifacts": artifacts or None}


for _module in (admin, bases, browse, meta, training, fusing, drift_reports, continual, hub, serve):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main(argv: list[str] | None = None) -> NoReturn:
    """Run the command line (console-script entry point)."""
    cli.main(args=argv, prog_name="adapter-registry")
    raise SystemExit(0)  # pragma: no cover - click exits itself


if __name__ == "__main__":  # pragma: no cover
    main()
