"""Click options generated from the fields of a config dataclass (:mod:`registry.configs`).

``train``, ``fuse`` and ``update`` take their hyper-parameters through these, so a field added
to :class:`~registry.configs.FitConfig` appears on every command with one name, one default and
one help text, and is validated in one place (the config's ``__post_init__``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import types
import typing
from collections.abc import Callable, Collection, MutableMapping
from typing import Any, TypeVar

import click

from ..errors import InvalidInput

C = TypeVar("C")
F = TypeVar("F", bound=Callable[..., Any])


def _option_name(field: str, prefix: str) -> str:
    return "--" + (prefix + field).replace("_", "-")


def _dest(field: str, prefix: str) -> str:
    return (prefix + field).replace("-", "_")


def _base_type(hint: Any) -> Any:
    """Return ``int`` for ``int | None`` and the like; the hint itself otherwise."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def _fields(
    cls: type, only: Collection[str] | None, exclude: Collection[str]
) -> list[tuple[dataclasses.Field[Any], Any]]:
    hints = typing.get_type_hints(cls)
    picked = [
        (f, hints[f.name])
        for f in dataclasses.fields(cls)
        if f.name not in exclude and (only is None or f.name in only)
    ]
    if only is not None:
        missing = set(only) - {f.name for f, _ in picked}
        if missing:
            raise TypeError(f"{cls.__name__} has no field(s) {sorted(missing)}")
    return picked


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def config_options(
    cls: type,
    *,
    only: Collection[str] | None = None,
    exclude: Collection[str] = (),
    prefix: str = "",
    help_prefix: str = "",
) -> Callable[[F], F]:
    """Return a decorator adding one click option per field of the dataclass ``cls``.

    ``prefix`` goes before every option name and destination (``fuse-`` → ``--fuse-epochs``,
    ``fuse_epochs``). Booleans that default to False become flags, those that default to True
    ``--x/--no-x`` switches; fields with ``metadata["csv"]`` take a comma-separated list.
    """
    options: list[click.Option] = []
    for field, hint in _fields(cls, only, exclude):
        default = _default(field)
        help_text = help_prefix + str(field.metadata.get("help", ""))
        name = _option_name(field.name, prefix)
        dest = _dest(field.name, prefix)
        kind = _base_type(hint)
        if kind is bool:
            decls = [f"{name}/--no-{name[2:]}" if default else name, dest]
            options.append(
                click.Option(decls, is_flag=True, default=default, help=help_text,
                             show_default=bool(default))
            )  # fmt: skip
            continue
        if field.metadata.get("csv"):
            options.append(click.Option([name, dest], type=str, default=None, help=help_text))
            continue
        choices = field.metadata.get("choices")
        ptype: Any = click.Choice(list(choices)) if choices else kind
        options.append(
            click.Option(
                [name, dest],
                type=ptype,
                default=default,
                show_default=default is not None,
                help=help_text,
            )
        )

    def decorate(command: F) -> F:
        params = getattr(command, "__click_params__", [])
        # click lists options in the reverse order of their decorators: keep the field order.
        params.extend(reversed(options))
        command.__click_params__ = params  # type: ignore[attr-defined]
        return command

    return decorate


def config_values(
    cls: type,
    values: MutableMapping[str, Any],
    *,
    only: Collection[str] | None = None,
    exclude: Collection[str] = (),
    prefix: str = "",
) -> dict[str, Any]:
    """Pop the options :func:`config_options` made for ``cls`` out of ``values``; return them
    as field values (comma-separated lists parsed)."""
    out: dict[str, Any] = {}
    for field, _ in _fields(cls, only, exclude):
        dest = _dest(field.name, prefix)
        if dest not in values:
            continue
        value = values.pop(dest)
        if field.metadata.get("csv"):
            value = _int_list(value, _option_name(field.name, prefix))
        out[field.name] = value
    return out


def given_fields(
    ctx: click.Context, cls: type, *, only: Collection[str] | None = None, prefix: str = ""
) -> set[str]:
    """Return the fields of ``cls`` whose options were given (command line or environment),
    as opposed to left at their defaults."""
    given = set()
    for field, _ in _fields(cls, only, ()):
        source = ctx.get_parameter_source(_dest(field.name, prefix))
        if source is not None and source is not click.core.ParameterSource.DEFAULT:
            given.add(field.name)
    return given


def config_from(cls: Callable[..., C], values: MutableMapping[str, Any], **fixed: Any) -> C:
    """Build ``cls`` from the options made for it (popped from ``values``) and ``fixed``."""
    assert isinstance(cls, type)
    made: C = cls(**{**config_values(cls, values, exclude=tuple(fixed)), **fixed})
    return made


def _int_list(value: str | None, option: str) -> list[int]:
    if not value:
        return []
    try:
        return [int(x) for x in value.split(",") if x.strip()]
    except ValueError as err:
        raise InvalidInput(
            f"{option} takes layer numbers, got {value!r}.", hint=f"e.g. {option} 0,1"
        ) from err


# --------------------------------------------------------- options every command shares
JSON_HELP = "Print JSON for scripts (the result alone on stdout)."
QUIET_HELP = "Print nothing but errors (and --json's JSON)."


def quiet_option() -> Callable[[F], F]:
    """``--quiet``/``-q`` (what :func:`output_options` adds; ``serve`` takes it alone)."""
    return click.option("--quiet", "-q", is_flag=True, help=QUIET_HELP)


def machine_options(help_prefix: str = "") -> Callable[[F], F]:
    """``--device`` and ``--threads``, the machine fields of :class:`~registry.configs.FitConfig`:
    the same options ``train``, ``fuse`` and ``update`` take, for the commands that only run a
    model (``eval``, ``predict``, ``attention``, ``serve``). See :func:`use_machine`."""
    from ..configs import FitConfig

    return config_options(FitConfig, only=("device", "threads"), help_prefix=help_prefix)


def use_machine(device: str, threads: int | None) -> str:
    """Check ``--device``/``--threads`` as ``train`` does, set the threads, return the device."""
    from ..configs import FitConfig
    from ..runtime import pick_device, set_threads

    FitConfig(device=device, threads=threads)  # the same checks and messages as train's
    set_threads(threads)
    return pick_device(device)


def output_options(*, progress: bool = False) -> Callable[[F], F]:
    """Add ``--json``, ``--quiet`` (and ``--no-progress`` for commands with long phases).

    ``--quiet`` prints nothing but errors (and the JSON with ``--json``); ``--no-progress`` and
    ``--quiet`` hide the progress bars, which show on stderr and only on a terminal. The
    command receives ``as_json``; ``quiet`` and ``no_progress`` are handled here. Goes under
    ``click.command`` and the other options, above ``click.pass_context``.
    """

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            from ..progress import showing

            quiet = bool(kwargs.pop("quiet", False))
            hidden = bool(kwargs.pop("no_progress", False))
            shown = not (quiet or hidden)
            silence = quiet and not kwargs.get("as_json")
            sink = (
                contextlib.redirect_stdout(io.StringIO()) if silence else contextlib.nullcontext()
            )
            with showing(shown), sink:
                return command(*args, **kwargs)

        made: Any = run
        if progress:
            made = click.option(
                "--no-progress",
                is_flag=True,
                help="Hide the progress bars (shown on stderr, on a terminal only).",
            )(made)
        made = quiet_option()(made)
        made = click.option("--json", "as_json", is_flag=True, help=JSON_HELP)(made)
        return typing.cast(F, made)

    return decorate


def text_fields_option() -> Callable[[F], F]:
    """``--text-fields``: the column(s) holding the text, for every command that reads data."""
    return click.option(
        "--text-fields", help="Column(s) holding the text, e.g. premise,hypothesis."
    )


def label_field_option() -> Callable[[F], F]:
    """``--label-field``: the column holding the label, for every command that reads labels."""
    return click.option(
        "--label-field", default="label", show_default=True, help="Column holding the label."
    )


def split_fields(value: str | None) -> tuple[str, ...] | None:
    """Return ``--text-fields`` as a tuple of column names (None when not given)."""
    return tuple(f.strip() for f in value.split(",") if f.strip()) if value else None


ALPHA_HELP = (
    "Family-wise significance level of the drift tests: drift when a decisive test's p-value "
    "is below ALPHA divided among those tests (Bonferroni); smaller: fewer false alarms."
)


def alpha_option() -> Callable[[F], F]:
    """``--alpha``: the drift tests' level, one text for ``drift`` and ``update``."""
    return click.option("--alpha", type=float, default=0.05, show_default=True, help=ALPHA_HELP)
