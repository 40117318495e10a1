"""``mailops report``: run report notebooks with papermill, render HTML into reports/ (R5)."""

from __future__ import annotations

import json
import sys

import click

from mailops.cli import Context, pass_ctx
from mailops.errors import ReportError


@click.command("report")
@click.argument("name", required=False)
@click.option(
    "-p",
    "--param",
    "params",
    nargs=2,
    multiple=True,
    metavar="KEY VALUE",
    help="A notebook parameter (typed from the notebook's parameters cell). Repeatable.",
)
@click.option("--show-code", is_flag=True, help="Keep the code cells in the HTML report.")
@click.option("--list", "list_", is_flag=True, help="List the notebooks and their parameters.")
@click.option("--all", "all_", is_flag=True, help="Run every report notebook (jobs first).")
@click.option("--reports-dir", type=click.Path(file_okay=False), help="Default: ./reports.")
@click.option("--json", "as_json", is_flag=True, help="Print the result paths as JSON.")
@pass_ctx
def report(
    ctx: Context,
    name: str | None,
    params: tuple[tuple[str, str], ...],
    show_code: bool,
    list_: bool,
    all_: bool,
    reports_dir: str | None,
    as_json: bool,
) -> None:
    """Run notebooks/NAME.ipynb into reports/NAME/<timestamp>[_scope].ipynb and .html.

    \b
    mailops report sync_audit -p DAYS 7 -p CUSTOMER c1
    mailops report activity_report -p VIEWER mia@corp.test --show-code
    mailops report --list
    """
    from mailops.notebook import list_notebooks, report_notebooks, run_report

    ctx.close()  # the kernel is another process: do not hold the DuckDB file here
    if list_:
        infos = list_notebooks(ctx.settings)
        if as_json:
            click.echo(
                json.dumps(
                    [
                        {
                            "name": i.name,
                            "kind": i.kind,
                            "title": i.title,
                            "parameters": i.parameters,
                        }
                        for i in infos
                    ],
                    indent=2,
                )
            )
            return
        for info in infos:
            click.echo(f"{info.name}  [{info.kind}]  {info.title}")
            for p in info.parameters.values():
                click.echo(
                    f"    {p['name']}: {p['inferred_type_name']} = {p['default']}  # {p['help']}"
                )
        return
    if all_ == bool(name):
        raise ReportError("name one notebook, or use --all (see --list)", code="usage")
    names = [i.name for i in report_notebooks(ctx.settings)] if all_ else [name or ""]
    given = dict(params)
    out = []
    failed: list[ReportError] = []
    for n in names:
        if all_:
            known = next(i for i in report_notebooks(ctx.settings) if i.name == n).parameters
            these = {k: v for k, v in given.items() if k in known}
        else:
            these = given
        try:
            res = run_report(
                n,
                these,
                settings=ctx.settings,
                show_code=show_code,
                reports_dir=reports_dir,
                progress=sys.stderr.isatty(),  # papermill's tqdm bar, cell by cell
            )
        except ReportError as e:
            if not all_:
                raise
            failed.append(e)  # --all: the other reports still run; the exit code tells
            click.echo(e.one_line(), err=True)
            continue
        out.append(res)
        if not as_json:
            click.echo(f"{n}: {res.html_path}  ({res.seconds:.1f}s)")
            for path in res.exports:
                click.echo(f"    export: {path}")
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": r.name,
                        "ipynb": str(r.ipynb_path),
                        "html": str(r.html_path),
                        "exports": [str(p) for p in r.exports],
                        "seconds": r.seconds,
                    }
                    for r in out
                ],
                indent=2,
            )
        )
    if failed:
        err = ReportError(f"{len(failed)} of {len(names)} notebooks failed (see above)")
        broken = [e for e in failed if e.exit_code == ReportError.exit_code]
        if not broken:  # O1: only the sync job's mailboxes failed: its own exit code
            err.code, err.exit_code = failed[0].code, failed[0].exit_code
        raise err


def register(cli: click.Group) -> None:
    cli.add_command(report)
