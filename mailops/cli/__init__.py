"""The ``mailops`` command. Each command group lives in its own module of this package.

The boundary rule: an expected failure (``MailopsError``) becomes one line on stderr and a
non-zero exit code; only a bug shows a traceback (and ``--debug`` shows it always).
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import click
import duckdb

from mailops.config import Settings
from mailops.errors import MailopsError
from mailops.files import private_umask
from mailops.store import Store


@dataclass
class Context:
    settings: Settings
    debug: bool = False
    _store: Store | None = field(default=None, repr=False)

    def store(self, read_only: bool = False) -> Store:
        if self._store is None:
            self._store = Store(self.settings.db, read_only=read_only)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


pass_ctx = click.make_pass_decorator(Context)

# (settings, address, echo) -> (device-code callback, browser) standing in for the user
StandIns = Callable[[Settings, str, Callable[[str], Any]], tuple[Any, Any]]


@dataclass
class Hooks:
    """What a command module may plug into the others. The dev wing sets
    ``sign_in_stand_ins`` (``mailbox connect --devserver --approve``), so no product module
    imports the wing."""

    sign_in_stand_ins: StandIns | None = None


HOOKS = Hooks()


class _Commands(dict[str, click.Command]):
    """``cli.commands``: every command module is imported at the first look into it (the
    help, an unknown name, a test); ``mailops sync`` imports only its own (``LEAN``)."""

    def __getitem__(self, name: str) -> click.Command:
        _register()
        return super().__getitem__(name)

    def get(self, name: str, default: Any = None) -> Any:
        _register()
        return super().get(name, default)

    def __contains__(self, name: object) -> bool:
        _register()
        return super().__contains__(name)

    def __iter__(self) -> Iterator[str]:
        _register()
        return super().__iter__()

    def __len__(self) -> int:
        _register()
        return super().__len__()

    def keys(self) -> Any:
        _register()
        return super().keys()

    def items(self) -> Any:
        _register()
        return super().items()

    def values(self) -> Any:
        _register()
        return super().values()


class _Group(click.Group):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = self._lazy = _Commands()

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = LEAN.get(cmd_name)
        if module is None or _loaded:
            return super().get_command(ctx, cmd_name)
        if dict.get(self._lazy, cmd_name) is None:
            # __import__, not importlib: `python -X importtime` lists it (tests/test_perf_imports)
            __import__(f"mailops.cli.{module}", fromlist=["register"]).register(self)
        return dict.get(self._lazy, cmd_name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    envvar=["MAILOPS_STORE", "MAILOPS_DB"],
    help="DuckDB file (default ./mailops.duckdb, or $MAILOPS_DB), or a lake (D1):"
    " ducklake:postgres://user@host:port/db?data=/path (or $MAILOPS_STORE).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="mailops")
@click.pass_context
def cli(ctx: click.Context, db: str | None, debug: bool) -> None:
    """mailops: connect mailboxes, sync customer email into DuckDB, send, report."""
    private_umask()  # C5: the store, exports and reports are written owner-only
    settings = Settings.load(db=db)
    logging.basicConfig(
        level=logging.DEBUG
        if debug
        else getattr(logging, settings.log_level.upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    obj = Context(settings=settings, debug=debug)
    ctx.obj = obj
    ctx.call_on_close(obj.close)


_loaded = False


def _register() -> None:
    """Each command group is one module with a ``register(cli)`` function: the modules of
    this package, then the dev wing's (``mailops devserver``, ``mailops demo``). Imported
    on first use (``_Commands``): the sync path never imports the reports' modules."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in COMMAND_MODULES:
        module = importlib.import_module(name if "." in name else f"mailops.cli.{name}")
        module.register(cli)


COMMAND_MODULES = (
    "db",
    "directory",
    "mailbox",
    "sync",
    "worker",
    "audit",
    "send",
    "draft",
    "outbox",
    "template",
    "report",
    "stats",
    "notify",
    "activities",
    "followup",
    "mailops.dev.cli",  # the dev wing: devserver, demo
    "policy",
    "selective",
    "explain",
    "erase",
)

# Commands whose module registers them alone (no other module adds to them, no HOOKS):
# `mailops sync` imports mailops.cli.sync only, not pandas & co. through the others.
LEAN = {"sync": "sync"}


def main(argv: list[str] | None = None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        rv = cli.main(args=argv, prog_name="mailops", standalone_mode=False)
        if isinstance(rv, int) and not isinstance(rv, bool):  # click.exceptions.Exit(N)
            return rv
    except MailopsError as e:
        if debug:
            raise
        click.echo(e.one_line(), err=True)
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except duckdb.Error as e:
        if debug:
            raise
        # e.g. a full disk or a damaged file while writing the store
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        click.echo(f"error [store]: {first}", err=True)
        return 3
    except OSError as e:
        if debug:
            raise
        # a full disk, a missing file, a dead socket: one line, never a traceback
        click.echo(
            f"error [os]: {e.strerror or e}{': ' + str(e.filename) if e.filename else ''}", err=True
        )
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
