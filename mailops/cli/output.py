"""One output convention for every listing command (in the manner of sqlite-utils'
``output_options``):

- a table by default (what a person reads; a command may shape it, see ``emit(table=)``);
- ``--json``: one JSON array of objects; ``--nl``: one JSON object per line (JSON lines);
- ``--csv`` / ``--tsv``: spreadsheet-safe CSV / TSV (``mailops.exports``), all on stdout;
- ``--output FILE``: the whole listing to FILE, the format from its suffix (``.csv``,
  ``.tsv``, ``.json``, ``.jsonl``/``.ndjson``, ``.parquet``); one line says what was written.

Use::

    @group.command("list")
    @output_options
    @pass_ctx
    def list_cmd(ctx: Context, out: Output) -> None:
        emit(frame, out, empty="nothing yet")

Machine formats carry every column; ``table=`` only shapes what a person reads.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pandas as pd

from mailops.errors import ConfigError
from mailops.exports import to_csv, write_csv

STDOUT_FORMATS = ("json", "nl", "csv", "tsv")
SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".json": "json",
    ".jsonl": "nl",
    ".ndjson": "nl",
    ".parquet": "parquet",
}


@dataclass(frozen=True)
class Output:
    """Where and how a listing goes: ``fmt`` is table | json | nl | csv | tsv | parquet."""

    fmt: str = "table"
    path: Path | None = None

    @property
    def is_table(self) -> bool:
        return self.fmt == "table" and self.path is None

    @classmethod
    def of(
        cls,
        *,
        json_: bool = False,
        nl: bool = False,
        csv: bool = False,
        tsv: bool = False,
        output: str | None = None,
    ) -> Output:
        chosen = [f for f, on in zip(STDOUT_FORMATS, (json_, nl, csv, tsv), strict=True) if on]
        if output:
            if chosen:
                raise ConfigError(
                    f"--output takes its format from the file name; drop --{chosen[0]}"
                )
            path = Path(output)
            fmt = SUFFIXES.get(path.suffix.lower())
            if fmt is None:
                raise ConfigError(
                    f"--output {output}: unknown format {path.suffix or '(no suffix)'}",
                    guidance="name the file .csv, .tsv, .json, .jsonl or .parquet",
                )
            return cls(fmt, path)
        if len(chosen) > 1:
            raise ConfigError(f"choose one output format, not --{' and --'.join(chosen)}")
        return cls(chosen[0] if chosen else "table")


TABLE = Output()


def output_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add --json/--nl/--csv/--tsv/--output to a command; it receives ``out: Output``."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs["out"] = Output.of(
            json_=kwargs.pop("out_json"),
            nl=kwargs.pop("out_nl"),
            csv=kwargs.pop("out_csv"),
            tsv=kwargs.pop("out_tsv"),
            output=kwargs.pop("out_file"),
        )
        return f(*args, **kwargs)

    options = [
        click.option("--json", "out_json", is_flag=True, help="One JSON array on stdout."),
        click.option("--nl", "out_nl", is_flag=True, help="JSON lines (one object a line)."),
        click.option("--csv", "out_csv", is_flag=True, help="CSV on stdout."),
        click.option("--tsv", "out_tsv", is_flag=True, help="TSV on stdout."),
        click.option(
            "--output",
            "out_file",
            metavar="FILE",
            help="Write to FILE; the format from its suffix (.csv .tsv .json .jsonl .parquet).",
        ),
    ]
    for opt in reversed(options):
        wrapper = opt(wrapper)
    return wrapper


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """DF as JSON-ready records: timestamps ISO 8601, NaN/NaT null, arrays lists."""
    return list(json.loads(df.to_json(orient="records", date_format="iso")))


def render_table(df: pd.DataFrame) -> str:
    with pd.option_context(
        "display.width", 250, "display.max_columns", 40, "display.max_colwidth", 60
    ):
        return str(df.to_string(index=False))


def emit(
    df: pd.DataFrame,
    out: Output | str = "table",
    *,
    empty: str = "(nothing)",
    table: Callable[[pd.DataFrame], str] | None = None,
    what: str = "rows",
) -> None:
    """Write the listing DF as OUT says (an ``Output``, or a format name for stdout)."""
    if isinstance(out, str):
        out = Output(out)
    if out.path is not None:
        _write(df, out.fmt, out.path)
        click.echo(f"wrote {len(df)} {what} to {out.path}")
        return
    if out.fmt == "json":
        click.echo(json.dumps(records(df), ensure_ascii=False, indent=2))
    elif out.fmt == "nl":
        for rec in records(df):
            click.echo(json.dumps(rec, ensure_ascii=False))
    elif out.fmt in ("csv", "tsv"):
        # cells a spreadsheet would run are neutralized (mailops.exports)
        click.echo(to_csv(df, sep="\t" if out.fmt == "tsv" else ","), nl=False)
    elif out.fmt == "table":
        click.echo(empty if df.empty else (table or render_table)(df))
    else:
        raise ConfigError(f"{out.fmt} goes to a file: use --output FILE.{out.fmt}")


def _write(df: pd.DataFrame, fmt: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt in ("csv", "tsv"):
        write_csv(df, path, sep="\t" if fmt == "tsv" else ",")
    elif fmt == "json":
        path.write_text(json.dumps(records(df), ensure_ascii=False, indent=1) + "\n")
    elif fmt == "nl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records(df)))
    else:
        df.to_parquet(path, index=False)
