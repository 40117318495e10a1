"""Rendering user-written templates under a time and memory bound (E2).

Any user can add a template, so a template is hostile input to every preview, send and
compose notebook that uses it. Two fences:

1. ``BoundedEnvironment`` (a jinja2 ``SandboxedEnvironment``) refuses what is plainly too
   big *before* computing it: huge powers (``9**(9**10)``), string or list repetition past
   ``MAX_LENGTH`` (``'x'*4000000000``), ranges past ``MAX_RANGE`` and more than
   ``MAX_LOOPS`` loop iterations over ranges in one render (nested ``range(100000)``).
2. Everything else that is slow or big (a loop over a long string inside another, a
   ``center(10**9)`` filter) is bounded by the process: each part renders in a worker
   process (``python -m mailops.sandbox``) under ``RLIMIT_AS`` and a wall-clock deadline;
   past it the worker is killed and started again for the next render.

Either way the caller gets one line naming the template and the part
(``template 'offer' (text) ...``), never a hang or a traceback.

The worker imports only jinja2 (no store, no pandas); it is started once and reused.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import pickle
import resource
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

__all__ = [
    "DEFAULT_MEMORY_MB",
    "DEFAULT_TIMEOUT",
    "BoundedEnvironment",
    "Fields",
    "RenderFailed",
    "environment",
    "render_part",
]

#: longest string / list a template may build by repetition (an offer is a few KB)
MAX_LENGTH = 100_000
#: largest range(); and loop iterations over ranges in one render
MAX_RANGE = 10_000
MAX_LOOPS = 100_000
#: largest integer a power or product may produce (4096 bits: ~1,200 digits)
MAX_INT_BITS = 4096
#: rendered output of one part
MAX_OUTPUT = 1_000_000
DEFAULT_TIMEOUT = 2.0  # seconds per part
DEFAULT_MEMORY_MB = 256  # address space the worker may add to its start-up size


class RenderFailed(Exception):
    """A part could not be rendered; ``code`` is a SendRefused code, ``message`` one line."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- merge fields ---------------------------------------------------------------------------
class Fields(Mapping[str, Any]):
    """A read-only group of merge fields that knows its own name (``deal``), so a missing
    ``deal.price`` is reported by its full name. Empty (None) values count as missing."""

    def __init__(self, path: str, values: Mapping[str, Any]) -> None:
        self._path = path
        self._values = {k: v for k, v in values.items() if v is not None and v != ""}

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None


def _path_of(obj: Any, name: str | None) -> str:
    if isinstance(obj, Fields):
        return f"{obj._path}.{name}"
    if isinstance(obj, _Collecting):
        return f"{obj.path}.{name}"
    return name or "?"


#: attributes jinja itself looks up on values (callables, filters); never merge fields
_JINJA_PROBES = frozenset({"unsafe_callable", "alters_data", "jinja_pass_arg", "environmentfilter"})


def _unsafe(obj: Any) -> bool:
    return isinstance(obj, _Collecting) and (
        obj._undefined_exception is SecurityError or _unsafe(obj._undefined_obj)
    )


class _Collecting(Undefined):
    """Records the full name of every missing field used, renders nothing (first pass)."""

    missing: list[str]  # set on the per-render subclass

    @property
    def path(self) -> str:
        return _path_of(self._undefined_obj, self._undefined_name)

    def _note(self) -> None:
        if self._undefined_exception is SecurityError or _unsafe(self._undefined_obj):
            raise SecurityError(self._undefined_hint or f"{self.path} is not allowed")
        if self.path not in self.missing:
            self.missing.append(self.path)

    def __getattr__(self, name: str) -> Any:
        if name[:2] == "__" or name in _JINJA_PROBES:
            raise AttributeError(name)
        return type(self)(obj=self, name=name)

    def __getitem__(self, name: Any) -> Any:
        return type(self)(obj=self, name=str(name))

    def __str__(self) -> str:
        self._note()
        return ""

    def __iter__(self) -> Iterator[Any]:
        self._note()
        return iter(())

    def __bool__(self) -> bool:
        self._note()
        return False

    def __len__(self) -> int:
        self._note()
        return 0

    def __eq__(self, other: object) -> bool:
        self._note()
        return False

    def __ne__(self, other: object) -> bool:
        self._note()
        return True

    def __hash__(self) -> int:
        return id(self)


def money(value: Any, currency: str | None = None) -> str:
    try:
        amount = Decimal(str(value))
    except Exception:  # noqa: BLE001 - not a number: show it as it is
        return str(value)
    text = f"{amount:,.2f}"
    return f"{text} {currency}" if currency else text


def fmt_date(value: Any, fmt: str = "%d %B %Y") -> str:
    if isinstance(value, datetime | date):
        return value.strftime(fmt)
    return str(value)


# -- the sandbox ----------------------------------------------------------------------------
class _Refused(SecurityError):
    """Too big to compute: refused before it is computed."""


class _Range:
    """``range()`` for templates: at most MAX_RANGE long, iterations counted per render."""

    def __init__(self, env: BoundedEnvironment, r: range) -> None:
        self._env, self._r = env, r

    def __iter__(self) -> Iterator[int]:
        for i in self._r:
            self._env.count_loop()
            yield i

    def __reversed__(self) -> Iterator[int]:
        return iter(_Range(self._env, self._r[::-1]))

    def __len__(self) -> int:
        return len(self._r)

    def __getitem__(self, i: Any) -> Any:
        return self._r[i]

    def __contains__(self, x: object) -> bool:
        return x in self._r


def _size_of(value: Any) -> int | None:
    return len(value) if isinstance(value, str | bytes | list | tuple) else None


class BoundedEnvironment(SandboxedEnvironment):
    """The jinja2 sandbox that also refuses large arithmetic, repetition and ranges."""

    intercepted_binops = frozenset({"**", "*"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.loops = 0
        self.globals["range"] = self._range
        for name in ("lipsum", "cycler", "joiner"):  # nothing an offer needs
            self.globals.pop(name, None)
        self.filters["money"] = money
        self.filters["date"] = fmt_date

    def count_loop(self) -> None:
        self.loops += 1
        if self.loops > MAX_LOOPS:
            raise _Refused(f"loops more than {MAX_LOOPS:,} times")

    def _range(self, *args: Any) -> _Range:
        try:
            r = range(*args)
        except TypeError as e:
            raise _Refused(f"range{tuple(args)!r}: {e}") from None
        if len(r) > MAX_RANGE:
            raise _Refused(f"range of {len(r):,} numbers is over the limit of {MAX_RANGE:,}")
        return _Range(self, r)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            _check_power(left, right)
        elif operator == "*":
            _check_product(left, right)
        return super().call_binop(context, operator, left, right)


def _int_bits(x: Any) -> int:
    return abs(x).bit_length() if isinstance(x, int) else 0


def _check_power(base: Any, exp: Any) -> None:
    if isinstance(base, int | float) and isinstance(exp, int) and not isinstance(exp, bool):
        big_base = abs(base) > 1
        if big_base and exp > 0 and exp * max(_int_bits(base), 1) > MAX_INT_BITS:
            raise _Refused(f"the power {_short(base)}**{_short(exp)} is too large to compute")
    if isinstance(exp, int) and isinstance(base, int) and _int_bits(exp) > 64:
        raise _Refused(f"the exponent {_short(exp)} is too large")


def _check_product(left: Any, right: Any) -> None:
    for seq, times in ((left, right), (right, left)):
        size = _size_of(seq)
        if size is not None and isinstance(times, int) and size * times > MAX_LENGTH:
            raise _Refused(
                f"repeating a text or list {times:,} times makes {size * times:,} items "
                f"(limit {MAX_LENGTH:,})"
            )
    big = isinstance(left, int) and isinstance(right, int)
    if big and _int_bits(left) + _int_bits(right) > MAX_INT_BITS:
        raise _Refused("the product is too large to compute")


def _short(n: Any) -> str:
    text = str(n) if not isinstance(n, int) or _int_bits(n) < 64 else f"<{_int_bits(n)}-bit number>"
    return text if len(text) <= 24 else text[:21] + "..."


def environment(undefined: type[Undefined] = StrictUndefined, autoescape: bool = False) -> Any:
    return BoundedEnvironment(undefined=undefined, autoescape=autoescape)


def _render_in_process(source: str, context: Mapping[str, Any], html: bool) -> dict[str, Any]:
    """Both passes of one part: collect every missing field, then render strictly."""
    missing: list[str] = []
    collecting = type("Collecting", (_Collecting,), {"missing": missing})
    try:
        try:
            environment(collecting, html).from_string(source).render(context)
        except (TypeError, ValueError, UndefinedError):
            pass  # a filter choked on a missing value: the missing list says which
        if missing:
            return {"status": "ok", "text": "", "missing": missing}
        text = environment(StrictUndefined, html).from_string(source).render(context)
    except TemplateSyntaxError as e:
        return _error("template_invalid", f"has a syntax error on line {e.lineno}: {e.message}")
    except _Refused as e:
        return _error("template_limit", f"is refused: {e}")
    except SecurityError as e:
        return _error("template_invalid", f"is not allowed: {e}")
    except OverflowError as e:
        return _error("template_limit", f"is refused: {e}")
    except RecursionError:
        return _error("template_limit", "is refused: it calls itself too deeply")
    except MemoryError:
        return _error("template_limit", "needs too much memory; stopped", fatal=True)
    except (UndefinedError, TypeError, ValueError, ArithmeticError, LookupError) as e:
        return _error("template_invalid", f"cannot be rendered: {_one_line(str(e))}")
    if len(text) > MAX_OUTPUT:
        return _error("template_limit", f"renders {len(text):,} characters (limit {MAX_OUTPUT:,})")
    return {"status": "ok", "text": text, "missing": []}


def _error(code: str, message: str, fatal: bool = False) -> dict[str, Any]:
    return {"status": "error", "code": code, "message": message, "fatal": fatal}


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."


# -- the worker process ---------------------------------------------------------------------
_HEADER = struct.Struct(">I")


def _write_frame(fd: int, payload: bytes) -> None:
    data = _HEADER.pack(len(payload)) + payload
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    while n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int, deadline: float | None) -> bytes:
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    return _read_exact(fd, size, deadline)


def _vm_size() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 64 << 20


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):  # Linux only; elsewhere the EOF on stdin stops us
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _worker_main(memory_mb: int) -> None:
    """Read pickled requests on stdin, answer JSON on stdout, until stdin closes."""
    fd_in, fd_out = sys.stdin.fileno(), os.dup(sys.stdout.fileno())
    sys.stdout = sys.stderr  # nothing but frames on the answer pipe
    _die_with_parent()
    limit = _vm_size() + memory_mb * (1 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    _write_frame(fd_out, b'{"status": "ready"}')
    while True:
        try:
            request = pickle.loads(_read_frame(fd_in, None))
        except EOFError:
            return
        except Exception as e:  # noqa: BLE001 - answer, do not die
            _write_frame(
                fd_out, json.dumps(_error("template_invalid", f"bad request: {e}")).encode()
            )
            continue
        soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
        used = int(resource.getrusage(resource.RUSAGE_SELF).ru_utime) + 1
        cpu = used + int(request["timeout"]) + 2  # a backstop: the parent kills it first
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, hard))
        answer = _render_in_process(request["source"], request["context"], request["html"])
        _write_frame(fd_out, json.dumps(answer).encode())
        if answer.get("fatal"):
            return


class _Worker:
    def __init__(self, memory_mb: int) -> None:
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.memory_mb = memory_mb
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailops.sandbox", str(memory_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.fd_in, self.fd_out = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        ready = json.loads(_read_frame(self.fd_out, time.monotonic() + 60))
        if ready.get("status") != "ready":  # pragma: no cover
            raise EOFError

    def ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        _write_frame(self.fd_in, pickle.dumps(request))
        answer: dict[str, Any] = json.loads(_read_frame(self.fd_out, time.monotonic() + timeout))
        return answer

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()


_lock = threading.Lock()
_worker: _Worker | None = None


def _stop_worker() -> None:
    global _worker
    if _worker is not None:
        _worker.stop()
        _worker = None


atexit.register(_stop_worker)


def _plain(value: Any) -> Any:
    """Context values the worker can unpickle without pandas or numpy."""
    kind = type(value)
    if value is None or kind in (str, int, float, bool, Decimal, date, datetime):
        return value
    if isinstance(value, datetime):  # pandas.Timestamp is one; the worker has no pandas
        plain = value.to_pydatetime() if hasattr(value, "to_pydatetime") else value
        return datetime.combine(plain.date(), plain.timetz())
    if isinstance(value, date):
        return date(value.year, value.month, value.day)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool | int | float) and kind.__module__ == "builtins":
        return value
    if isinstance(value, Fields):
        return Fields(value._path, {k: _plain(v) for k, v in value._values.items()})
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and kind.__module__ == "numpy":
        return _plain(value.item())
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def render_part(
    source: str,
    context: Mapping[str, Any],
    *,
    html: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> tuple[str, list[str]]:
    """(text, missing fields) of one part, rendered in the worker under the bounds.

    Raises RenderFailed with a one-line message (without the template's name).
    """
    global _worker
    request = {
        "source": source,
        "context": {k: _plain(v) for k, v in context.items()},
        "html": html,
        "timeout": timeout,
    }
    with _lock:
        if _worker is not None and (
            _worker.proc.poll() is not None or _worker.memory_mb != memory_mb
        ):
            _stop_worker()
        if _worker is None:
            try:
                _worker = _Worker(memory_mb)
            except (OSError, EOFError, TimeoutError, ValueError) as e:
                _stop_worker()
                raise RenderFailed(
                    "template_limit", f"cannot start the template renderer: {e}"
                ) from None
        try:
            answer = _worker.ask(request, timeout)
        except TimeoutError:
            _stop_worker()
            raise RenderFailed(
                "template_limit", f"took longer than {timeout:g} s to render; stopped"
            ) from None
        except (EOFError, OSError, ValueError):
            _stop_worker()
            raise RenderFailed(
                "template_limit",
                f"stopped the renderer (over {memory_mb} MB of memory or the time limit)",
            ) from None
        if answer.get("fatal"):
            _stop_worker()
    if answer["status"] != "ok":
        raise RenderFailed(answer["code"], answer["message"])
    return str(answer["text"]), list(answer["missing"])


if __name__ == "__main__":  # run from the imported module, so pickled Fields are the same class
    from mailops.sandbox import _worker_main as _main

    _main(int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_MEMORY_MB)
