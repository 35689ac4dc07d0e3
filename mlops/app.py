"""The Typer app every command registers on, and the one place errors become exit codes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:  # Typer vendors its own Click: its groups take and return these, not click's
    from typer._click.core import Command, Context

from tasks.core.errors import ConfigError, ExitCode, MlopsError, exit_codes_help
from tasks.core.redact import redact
from tasks.core.settings import debug_enabled

EXIT_CODES = exit_codes_help()
# -h as well as --help on every command, like prefect, mlflow and uv
CONTEXT = {"help_option_names": ["-h", "--help"]}
# what each command is: `mlops --help` groups them into these panels
PANELS = {
    "Pipeline": ("train", "run", "reproduce", "generate"),
    "Release": ("approve", "promote", "rollback", "history", "audit", "compliance", "check-off"),
    "Batch": ("score", "monitor"),
    "Inspect": ("status", "models", "check-config", "check-deployments"),
    "Platform": ("ci", "pools", "schedules", "server"),
}
# the order `mlops --help` lists commands in: the pipeline first, then release, batch, platform
COMMAND_ORDER = ("train", "run", "approve", "promote", "rollback", "history", "compliance",
                 "check-off", "score", "monitor", "reproduce", "generate", "status", "models",
                 "check-config", "check-deployments", "ci", "pools", "schedules", "server")


def one_line(exc: BaseException) -> str:
    """An exception as one redacted line (the type is named unless it is one of ours)."""
    text = str(exc).strip()
    message = text.splitlines()[0] if text else type(exc).__name__
    if not isinstance(exc, MlopsError):
        message = f"{type(exc).__name__}: {message}"
    return redact(message)


def fail(exc: BaseException) -> typer.Exit:
    """Print the error as one line on stderr; the exit code says what kind it was."""
    typer.echo(f"error: {one_line(exc)}", err=True)
    return typer.Exit(exc.exit_code if isinstance(exc, MlopsError) else ExitCode.FAILED)


class MlopsGroup(TyperGroup):
    """Every command's failures end here: one line on stderr and the error's exit code
    (MLOPS_DEBUG=1 keeps the traceback)."""

    def list_commands(self, ctx: Context) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda name: rank.get(name, len(rank)))

    def get_command(self, ctx: Context, name: str) -> Command | None:
        command = super().get_command(ctx, name)
        if command is not None and ctx.parent is None and not getattr(command, "rich_help_panel",
                                                                       None):
            command.rich_help_panel = panel(name)  # type: ignore[attr-defined]  # `mlops --help` groups commands by job
        if command is not None and not command.short_help:
            command.short_help = first_sentence(command.help or "")
        return command

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            # usage errors, help and exits belong to Typer/Click (Typer vendors its own Click)
            if debug_enabled() or type(exc).__module__.startswith(("click", "typer")):
                raise
            raise fail(exc) from None


def typer_app(help: str, **options) -> typer.Typer:
    options = {"no_args_is_help": True, "context_settings": CONTEXT, **options}
    return typer.Typer(help=help, cls=MlopsGroup, add_completion=False,
                       pretty_exceptions_enable=False, rich_markup_mode="rich", **options)


app = typer_app(
    "prefect-mlops: validate → train → evaluate → gate → register → deploy models as Prefect "
    "flows tracked in MLflow, then score batches and watch for drift.", epilog=EXIT_CODES)


def first_sentence(text: str) -> str:
    """A command's line in `mlops --help`: its help up to the first full stop, unwrapped."""
    flat = " ".join(text.split())
    head, stop, _ = flat.partition(". ")
    return head + "." if stop else flat


def panel(name: str) -> str:
    """The help panel a command is listed under."""
    return next((title for title, names in PANELS.items() if name in names), "Other")


def settings():
    from tasks.core.settings import Settings

    return Settings.from_env()


def model_config(model: str):
    """Settings and the model's validated config."""
    from tasks.core.config import load_config

    found = settings()
    return found, load_config(model, found.config_dir)


def need_server(what: str) -> None:
    if not settings().prefect_api_url:
        raise ConfigError(f"PREFECT_API_URL is not set: {what} needs your Prefect server "
                          "(e.g. export PREFECT_API_URL=http://127.0.0.1:4200/api), or start the local "
                          "one: mlops server start")


def print_table(header: tuple[str, ...], rows: Sequence[Sequence[object]],
                title: str | None = None) -> None:
    """A Rich table on stdout. Cells are never cut: a terminal wraps them, a pipe or file gets
    each row on one line (so grep and diff keep working)."""
    import sys

    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(*header, title=title, box=box.SIMPLE_HEAD, title_justify="left",
                  header_style="bold")
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    if sys.stdout.isatty():
        Console(highlight=False, markup=False, emoji=False).print(table, overflow="fold")
        return
    import io

    buffer = io.StringIO()
    Console(file=buffer, width=100_000, highlight=False, markup=False, emoji=False,
            no_color=True).print(table)
    for line in buffer.getvalue().splitlines():
        typer.echo(line.rstrip())


def print_json(value: object) -> None:
    """`--json` output: one document on stdout, keys as in the Python objects, nothing else."""
    import json

    typer.echo(json.dumps(value, indent=2, default=str))


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def run_flow(run):
    """Run one flow on the user's Prefect server or a temporary one."""
    from mlops.local_server import start_if_needed

    server = start_if_needed()
    if server is not None:
        typer.echo(f"started a temporary Prefect server at {server.api_url} "
                   "(set PREFECT_API_URL to use your own)")
        server.wait_ready(settings().server_startup_s)
    with flow_heartbeats():
        return run()


@contextmanager
def flow_heartbeats() -> Iterator[None]:
    """The flow runs of this process beat as often as every job's (pools.yaml `limits:`), so the
    zombie-run automation never takes a live one for dead (tasks/core/heartbeats.py)."""
    from deployments.pools import load_limits
    from tasks.core.heartbeats import cli_heartbeats

    with cli_heartbeats(load_limits().heartbeat_seconds):
        yield
