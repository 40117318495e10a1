"""Run a report notebook with papermill and render it as HTML into ``reports/`` (R5).

``run_report("sync_audit", {"DAYS": 7})`` executes ``notebooks/sync_audit.ipynb`` into
``reports/sync_audit/<UTC timestamp>[_scope].ipynb`` and writes ``.html`` beside it (code
cells hidden unless ``show_code``). The kernel is a subprocess: it learns the store from
``MAILOPS_DB`` (absolute) in its environment, never from a parameter, and parameters never
carry secrets (papermill writes them into the executed notebook).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailops.config import Settings
from mailops.errors import MailopsError, ReportError
from mailops.files import private_dir, private_umask

__all__ = [
    "NotebookInfo",
    "ReportResult",
    "list_notebooks",
    "notebooks_dir",
    "render_html",
    "report_notebooks",
    "run_report",
]

_SECRETISH = re.compile(r"pass(word)?|secret|token|api_?key|credential", re.I)
_PARSERS: dict[str, Any] = {
    "int": int,
    "float": float,
    "bool": lambda v: str(v).strip().lower() in ("1", "true", "yes", "on"),
    "str": str,
}


@dataclass
class ReportResult:
    name: str
    ipynb_path: Path
    html_path: Path
    exports: list[Path] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class NotebookInfo:
    name: str
    path: Path
    kind: str  # report | job | other (kind "other" is left out of ``--all``)
    order: int
    title: str
    parameters: dict[str, dict[str, Any]]


def notebooks_dir(settings: Settings | None = None) -> Path:
    """``settings.notebooks_dir`` (relative to the working directory), else the checkout's."""
    settings = settings or Settings.load()
    here = Path(settings.notebooks_dir)
    if here.is_dir():
        return here.resolve()
    repo = Path(__file__).resolve().parent.parent / "notebooks"
    if repo.is_dir():
        return repo
    raise ReportError(f"no notebooks folder at {here}", guidance="set MAILOPS_NOTEBOOKS_DIR")


def _info(path: Path) -> NotebookInfo:
    import nbformat
    import papermill as pm

    nb = nbformat.read(path, as_version=4)
    meta = nb.metadata.get("mailops", {})
    title = ""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            title = cell.source.strip().splitlines()[0].lstrip("# ").strip() if cell.source else ""
            break
    return NotebookInfo(
        name=path.stem,
        path=path,
        kind=meta.get("kind", "other"),
        order=int(meta.get("order", 99)),
        title=title,
        parameters=_inspect(pm, path),
    )


def _inspect(pm: Any, path: Path) -> dict[str, dict[str, Any]]:
    """papermill's view of the parameters cell; its per-line parse warnings are noise here
    (tests hold our notebooks' cells to typed, commented, one '=' a line)."""
    log = logging.getLogger("papermill.translators")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return dict(pm.inspect_notebook(str(path)))
    finally:
        log.setLevel(level)


def list_notebooks(settings: Settings | None = None) -> list[NotebookInfo]:
    """Every notebook in the notebooks folder, reports first in their order."""
    infos = [_info(p) for p in sorted(notebooks_dir(settings).glob("*.ipynb"))]
    return sorted(infos, key=lambda i: (i.order, i.name))


def report_notebooks(settings: Settings | None = None) -> list[NotebookInfo]:
    """What ``mailops report --all`` runs: jobs and reports (not interactive notebooks)."""
    return [i for i in list_notebooks(settings) if i.kind in ("job", "report")]


def _typed(info: NotebookInfo, params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if _SECRETISH.search(key):
            raise ReportError(
                f"parameter {key} looks like a secret; secrets never go into notebooks",
                guidance="papermill writes parameters into the executed notebook",
            )
        if key not in info.parameters:
            known = ", ".join(info.parameters) or "none"
            raise ReportError(f"{info.name} has no parameter {key} (parameters: {known})")
        kind = (info.parameters[key].get("inferred_type_name") or "str").strip()
        parse = _PARSERS.get(kind)
        if parse is not None and isinstance(value, str):
            try:
                value = parse(value)
            except ValueError:
                raise ReportError(f"parameter {key} must be {kind}, got {value!r}") from None
        out[key] = value
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]+", "-", text).strip("-")[:60]


def _scope_suffix(params: Mapping[str, Any]) -> str:
    parts = []
    for key in ("VIEWER", "MAILBOX", "CUSTOMER", "RUN_ID"):
        value = params.get(key)
        if value not in (None, "", "all", "system", 0):
            parts.append(_slug(str(value)))
    return ("_" + "_".join(parts)) if parts else ""


def _output_base(reports_dir: Path, name: str, params: Mapping[str, Any]) -> Path:
    private_umask()  # C5: the executed notebook, its HTML and the exports: owner-only
    folder = private_dir(reports_dir / name)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = folder / f"{stamp}{_scope_suffix(params)}"
    n = 2
    while base.with_name(base.name + ".ipynb").exists():
        base = folder / f"{stamp}-{n}{_scope_suffix(params)}"
        n += 1
    return base


@contextmanager
def _kernel_env(settings: Settings) -> Iterator[None]:
    """The kernel subprocess inherits os.environ: point it at this store (absolute path)."""
    saved = {k: os.environ.get(k) for k in ("MAILOPS_DB", "MPLBACKEND")}
    db = settings.db
    keep = db == ":memory:" or db.startswith("ducklake:")  # D1: a lake address as it is
    os.environ["MAILOPS_DB"] = db if keep else str(Path(db).resolve())
    os.environ["MPLBACKEND"] = "Agg"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def render_html(ipynb: Path, html: Path | None = None, *, show_code: bool = False) -> Path:
    """Render an executed notebook as a self-contained HTML page (images embedded)."""
    import warnings

    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(ipynb, as_version=4)
    # scrapbook's glued values are data for tests, not for readers: drop them from the page
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [
                o for o in cell.outputs if not any("scrapbook" in k for k in o.get("data", {}))
            ]
    exporter = HTMLExporter(
        exclude_input=not show_code,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        # R6: the page reads offline and asks no CDN for anything (who opened which report
        # is nobody else's business); without MathJax a "$...$" in a name stays text
        mathjax_url="",
        require_js_url="",
    )
    heading = next(
        (
            c.source.strip().splitlines()[0].lstrip("# ")
            for c in nb.cells
            if c.cell_type == "markdown" and c.source.strip()
        ),
        ipynb.parent.name.replace("_", " "),
    )
    title = f"{heading} - {ipynb.stem}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    body = re.sub(r'<script src="">\s*</script>', "", body)
    out = html or ipynb.with_suffix(".html")
    out.write_text(body, encoding="utf-8")
    return out


def _migrate(settings: Settings) -> None:
    """The kernel reads the store read-only, so apply pending migrations first."""
    from mailops.store import Store, store_exists

    if settings.db == ":memory:":
        raise ReportError("reports need a store file, not :memory:")
    if not store_exists(settings.db):
        raise ReportError(
            f"no store at {settings.db}", guidance="run `mailops db migrate` or a sync first"
        )
    from mailops.reports import ReadStore

    reader = ReadStore(settings.db)
    try:
        pending = reader.pending()
    finally:
        reader.close()
    if pending:  # rare (an upgrade): only then compete with a running sync for the write lock
        Store(settings.db).close()


#: O1: a scheduled job whose mailboxes failed (its notebook's SyncIncomplete) exits with the
#: sync's own code, apart from a notebook that broke (8).
SYNC_EXIT_CODES = {"sync_failed": 9, "mailbox_problematic": 10, "already_syncing": 11}


def run_report(
    name: str,
    params: Mapping[str, Any] | None = None,
    *,
    settings: Settings | None = None,
    show_code: bool = False,
    reports_dir: str | Path | None = None,
    kernel_name: str = "python3",
    timeout: int = 600,
    progress: bool = False,
) -> ReportResult:
    """Execute notebooks/NAME.ipynb with PARAMS; write the executed notebook and its HTML.

    Raises ReportError with the failing cell's error on one line when the notebook fails;
    the failed notebook and its HTML are still written (the error is in them)."""
    import time

    import papermill as pm

    settings = settings or Settings.load()
    infos = {i.name: i for i in list_notebooks(settings)}
    if name not in infos:
        raise ReportError(
            f"no notebook {name!r}; available: {', '.join(infos) or 'none'}",
            code="report_unknown",
        )
    info = infos[name]
    typed = _typed(info, params or {})
    _migrate(settings)
    base = _output_base(Path(reports_dir or settings.reports_dir).resolve(), name, typed)
    if "EXPORT_PREFIX" in info.parameters and "EXPORT_PREFIX" not in typed:
        typed["EXPORT_PREFIX"] = str(base)
    ipynb = base.with_name(base.name + ".ipynb")
    html = base.with_name(base.name + ".html")
    started = time.monotonic()
    failure: ReportError | None = None
    with _kernel_env(settings):
        try:
            pm.execute_notebook(
                str(info.path),
                str(ipynb),
                parameters=typed,
                kernel_name=kernel_name,
                progress_bar=progress,
                log_output=False,
                cwd=os.getcwd(),
                execution_timeout=timeout,
                report_mode=False,
                # ipykernel 7 warns on stderr about plain TCP on 127.0.0.1; keep the CLI quiet
                extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
            )
        except pm.PapermillExecutionError as e:
            failure = ReportError(
                f"{name} failed in cell {e.exec_count}: {e.ename}: {_one_line(e.evalue)}",
                guidance=f"see {html}",
            )
            if e.ename == "SyncIncomplete":  # O1: the job ran; mailboxes failed or were skipped
                failure.code = str(e.evalue).split(":", 1)[0]
                failure.exit_code = SYNC_EXIT_CODES.get(failure.code, 9)
        except MailopsError:
            raise
        except Exception as e:  # kernel died, could not start, timeout ...
            failure = ReportError(f"{name} could not run: {type(e).__name__}: {_one_line(str(e))}")
    if ipynb.exists():
        render_html(ipynb, html, show_code=show_code)
    if failure is not None:
        raise failure
    exports = sorted(
        p for p in base.parent.glob(base.name + "_*") if p.suffix in (".csv", ".parquet")
    )
    return ReportResult(name, ipynb, html, exports, round(time.monotonic() - started, 2))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:500]
