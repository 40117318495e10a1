"""Offer templates (E2): merge fields from customer, deal and unit, rendered in a sandbox.

A template may only read the fields it is given (``SandboxedEnvironment``). A field that is
missing -- unknown, or empty in the CRM (a deal without a price) -- is never rendered as a
blank: the first pass records *every* missing field with ``_Collecting``, and the send is
refused listing them all; the final pass uses ``StrictUndefined``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from mailops.errors import SendRefused
from mailops.send.compose import sanitize_html
from mailops.store import Store
from mailops.store import directory as dirstore
from mailops.store.outbox import Template

__all__ = ["Fields", "Rendered", "merge_context", "render", "render_template"]


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


def _env(undefined: type[Undefined], autoescape: bool) -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=undefined, autoescape=autoescape)
    env.filters["money"] = money
    env.filters["date"] = fmt_date
    return env


@dataclass(frozen=True)
class Rendered:
    subject: str
    body_text: str | None
    body_html: str | None


def _render_one(
    source: str, context: Mapping[str, Any], html: bool, missing: list[str], label: str
) -> str:
    collecting = type("Collecting", (_Collecting,), {"missing": missing})
    try:
        try:
            _env(collecting, html).from_string(source).render(context)
        except (TypeError, ValueError, UndefinedError):
            pass  # a filter choked on a missing value: the missing list says which
        if missing:
            return ""
        return _env(StrictUndefined, html).from_string(source).render(context)
    except TemplateSyntaxError as e:
        raise SendRefused(
            f"template {label} has a syntax error on line {e.lineno}: {e.message}",
            code="template_invalid",
        ) from None
    except SecurityError as e:
        raise SendRefused(
            f"template {label} is not allowed: {e}", code="template_invalid"
        ) from None
    except (UndefinedError, TypeError, ValueError) as e:
        raise SendRefused(
            f"template {label} cannot be rendered: {e}", code="template_invalid"
        ) from None


def render(
    subject: str,
    body_text: str | None,
    body_html: str | None,
    context: Mapping[str, Any],
    *,
    name: str = "template",
) -> Rendered:
    """Render all parts; SendRefused(template_missing_fields) lists every missing field."""
    missing: list[str] = []
    out_subject = _render_one(subject, context, False, missing, f"{name} (subject)")
    out_text = (
        _render_one(body_text, context, False, missing, f"{name} (text)") if body_text else None
    )
    out_html = (
        _render_one(body_html, context, True, missing, f"{name} (html)") if body_html else None
    )
    if missing:
        raise SendRefused(
            f"template {name!r} needs fields that are empty or unknown: {', '.join(missing)}",
            code="template_missing_fields",
            guidance="fill them in the CRM (or pick the deal with --deal) and try again",
        )
    return Rendered(
        subject=" ".join(out_subject.split()),
        body_text=out_text,
        body_html=sanitize_html(out_html) if out_html is not None else None,
    )


def merge_context(
    store: Store,
    *,
    customer_id: str,
    user_id: str,
    deal_id: str | None = None,
    mailbox_address: str | None = None,
    today: date | None = None,
) -> dict[str, Any]:
    """The merge fields: ``customer``, ``deal``, ``unit``, ``sales`` (the sender), ``today``."""
    cust = dirstore.get_customer(store, customer_id) or {}
    name = cust.get("name") or None
    customer = Fields(
        "customer",
        {
            "id": customer_id,
            "name": name,
            "first_name": name.split()[0] if name else None,
            "last_name": name.split()[-1] if name and len(name.split()) > 1 else None,
            "email": cust.get("primary_address"),
        },
    )
    ctx: dict[str, Any] = {"customer": customer}
    if deal_id is None:
        deals = dirstore.deal_customers(store, customer_id)["deal_id"].drop_duplicates().tolist()
        deal_id = deals[0] if len(deals) == 1 else None  # ambiguous -> must be chosen
    if deal_id is not None:
        rows = store.query("SELECT * FROM deals WHERE id = ?", [deal_id])
        if rows.empty:
            raise SendRefused(f"no deal {deal_id!r}", code="unknown_deal")
        d = {k: (None if _isna(v) else v) for k, v in rows.iloc[0].to_dict().items()}
        for key in ("expected_close", "created_at"):
            value = d.get(key)
            if value is not None and hasattr(value, "to_pydatetime"):
                d[key] = value.to_pydatetime()
        ctx["deal"] = Fields("deal", d)
        ctx["unit"] = Fields(
            "unit",
            {
                "number": d.get("unit"),
                "project": d.get("project"),
                "price": d.get("price"),
                "currency": d.get("currency"),
            },
        )
    user = dirstore.find_user(store, user_id)
    ctx["sales"] = Fields(
        "sales",
        {
            "name": user.name if user else None,
            "email": mailbox_address or (user.email if user else None),
        },
    )
    ctx["today"] = today or date.today()
    return ctx


def _isna(v: Any) -> bool:
    try:
        import pandas as pd

        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def render_template(
    store: Store,
    template: Template,
    *,
    customer_id: str,
    user_id: str,
    deal_id: str | None = None,
    mailbox_address: str | None = None,
) -> Rendered:
    ctx = merge_context(
        store,
        customer_id=customer_id,
        user_id=user_id,
        deal_id=deal_id,
        mailbox_address=mailbox_address,
    )
    return render(template.subject, template.body_text, template.body_html, ctx, name=template.name)


def check_syntax(name: str, subject: str, body_text: str | None, body_html: str | None) -> None:
    """Refuse a template that does not parse, before it is stored."""
    env = _env(StrictUndefined, False)
    for label, source in (("subject", subject), ("text", body_text), ("html", body_html)):
        if not source:
            continue
        try:
            env.parse(source)
        except TemplateSyntaxError as e:
            raise SendRefused(
                f"template {name} ({label}) has a syntax error on line {e.lineno}: {e.message}",
                code="template_invalid",
            ) from None
