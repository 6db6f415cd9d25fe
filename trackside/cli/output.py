"""What the CLI writes: tables and fields for people, JSON for scripts, errors to stderr.

- Human output is a Rich table (or aligned fields); `--json` prints plain JSON to stdout instead.
- Colours only on a terminal, never with `NO_COLOR` set; errors go to stderr as `Error: ...`.
- Arguments and options of the simple types (str, int with min/max, bool) are converted without
  pydantic: Typer 0.29 builds a pydantic TypeAdapter for every parameter of the command it runs,
  and importing pydantic alone costs about 0.1 s of the 0.3 s a command may take to start.
- Help is rendered as plain text by `TracksideGroup` / `TracksideCommand` (Typer's Rich help
  costs ~0.3 s of imports, more than the whole `trackside --help` may take), and a
  `CommandFailed` raised by a command (a `RemoteError` of the client included) ends it with its
  exit code and message, without a traceback. `register(app)` installs both on the app;
  commands are declared with `app.command(cls=TracksideCommand)`.

Rich is imported only when a table or live display is printed.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import typer
from typer._coercion import RuntimeParam
from typer.core import TyperCommand, TyperGroup, _TyperParameter

from .exit_codes import CommandFailed

if TYPE_CHECKING:
    from rich.console import Console
    from typer._click import Context, HelpFormatter


# ---- terminals and colours -------------------------------------------------------------------


def is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def colours_on(stream: IO[str]) -> bool:
    return is_terminal(stream) and not os.environ.get("NO_COLOR")


_ANSI = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}


def styled(text: str, style: str, stream: IO[str]) -> str:
    """`text` in `style` (space-separated names from _ANSI) when `stream` shows colours."""
    if not colours_on(stream):
        return text
    codes = ";".join(_ANSI[name] for name in style.split() if name in _ANSI)
    return f"\x1b[{codes}m{text}\x1b[0m" if codes else text


_console: Console | None = None


def console() -> Console:
    """The Rich console of stdout (imports Rich on first use)."""
    global _console
    if _console is None:
        from rich.console import Console

        terminal = is_terminal(sys.stdout)
        _console = Console(
            highlight=False,
            color_system=None if os.environ.get("NO_COLOR") else "auto",  # NO_COLOR: no styles at all
            # a pipe gets whole lines rather than Rich's 80 columns
            width=None if terminal or os.environ.get("COLUMNS") else 200,
            soft_wrap=not terminal,
        )
    return _console


# ---- messages --------------------------------------------------------------------------------


def error(message: str) -> None:
    sys.stderr.write(f"{styled('Error:', 'bold red', sys.stderr)} {message}\n")
    sys.stderr.flush()


def warning(message: str) -> None:
    sys.stderr.write(f"{styled('Warning:', 'bold yellow', sys.stderr)} {message}\n")
    sys.stderr.flush()


def say(message: str = "", style: str = "") -> None:
    """A line for people on stdout (`style`: e.g. "green", "dim", "bold")."""
    sys.stdout.write((styled(message, style, sys.stdout) if style else message) + "\n")
    sys.stdout.flush()


def print_json(data: Any) -> None:
    """`data` as JSON on stdout: indented, keys in the order given, non-ASCII kept."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def print_table(
    columns: Sequence[str], rows: Iterable[Sequence[str]], styles: dict[str, dict[str, str]] | None = None
) -> None:
    """A borderless table; `styles[column][value]` colours a cell (e.g. a status)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False, show_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        cells = []
        for column, value in zip(columns, row, strict=True):
            style = (styles or {}).get(column, {}).get(value, "")
            cells.append(Text(value, style=style))
        table.add_row(*cells)
    out = console()
    with out.capture() as captured:
        out.print(table)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
    sys.stdout.flush()


def print_fields(fields: Iterable[tuple[str, str]], styles: dict[str, dict[str, str]] | None = None) -> None:
    """`label: value` lines, labels aligned (multi-line values indented under the first line)."""
    pairs = list(fields)
    width = max((len(label) for label, _ in pairs), default=0) + 1
    for label, value in pairs:
        style = (styles or {}).get(label, {}).get(value, "")
        shown = styled(value, style, sys.stdout) if style else value
        indented = shown.replace("\n", "\n" + " " * (width + 1))
        say(f"{styled((label + ':').ljust(width), 'bold', sys.stdout)} {indented}")


def ago(timestamp: float | None, now: float | None = None) -> str:
    """`12s ago`, `5m ago`, `3h ago`, `2d ago`; `-` for none."""
    if not timestamp:
        return "-"
    seconds = max(0, int((time.time() if now is None else now) - timestamp))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def local_time(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


# ---- help and errors: the classes every command goes through ------------------------------------

# Rich markup that may be in a docstring ("[bold]...[/bold]"); other brackets are text
_MARKUP = re.compile(r"\[/?(?:bold|b|dim|italic|i|underline|u|red|green|yellow|blue|cyan|magenta)\]|\[/\]")


def _help_text(help_text: str | None) -> str:
    text = inspect.cleandoc(help_text or "").partition("\f")[0]
    return _MARKUP.sub("", text)


def _write_help_text(command: TyperCommand | TyperGroup, formatter: HelpFormatter) -> None:
    """The docstring as written (examples keep their lines), Rich markup removed."""
    text = _help_text(command.help)
    if text:
        formatter.write_paragraph()
        with formatter.indentation():
            for line in text.splitlines():
                formatter.write(f"{' ' * formatter.current_indent}{line}\n" if line.strip() else "\n")


@dataclass(frozen=True)
class _PlainCoercion(RuntimeParam):
    """Typer's coercion contract (typer._coercion.RuntimeParam) for a simple type, in plain Python."""

    convert: Callable[[Any], Any]

    def _coerce_value(self, value: Any, param: _TyperParameter, ctx: Context) -> Any:
        try:
            return self.convert(value)
        except ValueError as e:
            raise typer.BadParameter(str(e), ctx=ctx, param=param) from None


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "t", "yes", "y", "on"):
        return True
    if text in ("", "0", "false", "f", "no", "n", "off"):
        return False
    raise ValueError(f"{value!r} is not a valid boolean")


def _to_int(low: float | None, high: float | None) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a valid integer") from None
        if (low is not None and number < low) or (high is not None and number > high):
            bounds = f"{'' if low is None else f'{low}<='}x{'' if high is None else f'<={high}'}"
            raise ValueError(f"{number} is not in the range {bounds}")
        return number

    return convert


def _plain_coercion(param: object) -> _PlainCoercion | None:
    """A coercion without pydantic for `param`, when its type is a simple one (else Typer's)."""
    if not isinstance(param, _TyperParameter):
        return None
    descriptor = param.type_descriptor
    info, annotation = descriptor.parameter_info, descriptor.annotation
    if info.parser is not None or descriptor.is_choice or descriptor.is_file:
        return None
    convert: Callable[[Any], Any]
    if annotation is str:
        convert = str
    elif annotation is bool:
        convert = _to_bool
    elif annotation is int and not info.clamp:
        convert = _to_int(info.min, info.max)
    else:
        return None
    if param.multiple or param.nargs != 1:
        single = convert

        def convert(values: Any) -> Any:
            return tuple(single(value) for value in values)

    return _PlainCoercion(parameter_info=info, annotation=annotation, convert=convert)


def _use_plain_coercion(params: list[Any]) -> None:
    for param in params:
        coercion = _plain_coercion(param)
        if coercion is not None:
            param._runtime_param = coercion


class TracksideCommand(TyperCommand):
    """A command with plain-text help (fast: no Rich import) and light parameter coercion."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["rich_markup_mode"] = None
        super().__init__(**kwargs)

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        _use_plain_coercion(self.get_params(ctx))  # the help option included
        return super().parse_args(ctx, args)

    def format_help_text(self, ctx: Context, formatter: HelpFormatter) -> None:
        _write_help_text(self, formatter)

    def get_short_help_str(self, limit: int = 45) -> str:
        return _MARKUP.sub("", super().get_short_help_str(limit))


class TracksideGroup(TyperGroup):
    """A group with plain-text help and usage errors, and the CLI's error handling: a
    `CommandFailed` becomes `Error: ...` on stderr and its exit code."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["rich_markup_mode"] = None
        super().__init__(**kwargs)

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        _use_plain_coercion(self.get_params(ctx))  # completion and help options included
        return super().parse_args(ctx, args)

    def format_help_text(self, ctx: Context, formatter: HelpFormatter) -> None:
        _write_help_text(self, formatter)

    def get_short_help_str(self, limit: int = 45) -> str:
        return _MARKUP.sub("", super().get_short_help_str(limit))

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except CommandFailed as failure:
            error(str(failure))
            raise typer.Exit(int(failure.exit_code)) from None


def register(app: typer.Typer) -> None:
    """Make `app` a TracksideGroup (plain help, error handling); commands opt in with
    `cls=TracksideCommand`."""
    app.info.cls = TracksideGroup
