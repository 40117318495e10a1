"""Offer templates (E2): merge fields from customer, deal and unit, rendered in a sandbox.

A template may only read the fields it is given (``SandboxedEnvironment``). A field that is
missing -- unknown, or empty in the CRM (a deal without a price) -- is never rendered as a
blank: the first pass records *every* missing field with ``_Collecting``, and the send is
refused listing them all; the final pass uses ``StrictUndefined``.

Any user can add a template, so each part renders under a time and memory bound in a worker
process, in a sandbox that refuses huge powers, repetitions and ranges (``mailops.sandbox``);
a template over a bound is refused with one line naming it (``template_limit``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from jinja2 import TemplateSyntaxError

from mailops import sandbox
from mailops.config import Settings
from mailops.errors import SendRefused
from mailops.sandbox import Fields, fmt_date, money
from mailops.send.compose import sanitize_html
from mailops.store import Store
from mailops.store import directory as dirstore
from mailops.store.outbox import Template

__all__ = [
    "Fields",
    "Limits",
    "Rendered",
    "fmt_date",
    "merge_context",
    "money",
    "render",
    "render_template",
]


@dataclass(frozen=True)
class Limits:
    """Per part: wall-clock seconds, and MB of memory the renderer may use."""

    timeout: float = sandbox.DEFAULT_TIMEOUT
    memory_mb: int = sandbox.DEFAULT_MEMORY_MB

    @classmethod
    def of(cls, settings: Settings | None) -> Limits:
        if settings is None:
            return cls()
        return cls(settings.template_timeout, settings.template_memory_mb)


@dataclass(frozen=True)
class Rendered:
    subject: str
    body_text: str | None
    body_html: str | None


def _render_one(
    source: str,
    context: Mapping[str, Any],
    html: bool,
    missing: list[str],
    label: str,
    limits: Limits,
) -> str:
    try:
        text, more = sandbox.render_part(
            source, context, html=html, timeout=limits.timeout, memory_mb=limits.memory_mb
        )
    except sandbox.RenderFailed as e:
        raise SendRefused(f"template {label} {e.message}", code=e.code) from None
    missing.extend(m for m in more if m not in missing)
    return text


def render(
    subject: str,
    body_text: str | None,
    body_html: str | None,
    context: Mapping[str, Any],
    *,
    name: str = "template",
    limits: Limits | None = None,
) -> Rendered:
    """Render all parts; SendRefused(template_missing_fields) lists every missing field."""
    missing: list[str] = []
    lim = limits or Limits()
    label = repr(name)
    out_subject = _render_one(subject, context, False, missing, f"{label} (subject)", lim)
    out_text = (
        _render_one(body_text, context, False, missing, f"{label} (text)", lim)
        if body_text
        else None
    )
    out_html = (
        _render_one(body_html, context, True, missing, f"{label} (html)", lim)
        if body_html
        else None
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
        d = _deal_of_customer(store, deal_id, customer_id)
        ctx["deal"] = Fields("deal", {k: d.get(k) for k in DEAL_FIELDS})
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


# the only deal columns a template may read (README: merge fields); never the whole row
DEAL_FIELDS = ("id", "unit", "price", "currency", "project", "stage", "expected_close")


def _deal_of_customer(store: Store, deal_id: str, customer_id: str) -> dict[str, Any]:
    """The deal, when CUSTOMER_ID is one of its customers: a template never renders a deal
    the customer is not on (someone else's offer and price)."""
    row = dirstore.get_deal(store, deal_id)
    if row is None:
        raise SendRefused(f"no deal {deal_id!r}", code="unknown_deal")
    members = set(dirstore.deal_customers(store, customer_id)["deal_id"])
    if deal_id not in members:
        raise SendRefused(
            f"deal {deal_id!r} is not a deal of customer {customer_id!r}",
            code="deal_not_of_customer",
            guidance="pick one of the customer's deals with --deal",
        )
    d = {k: (None if _isna(v) else v) for k, v in row.items()}
    for key in ("expected_close", "created_at"):
        value = d.get(key)
        if value is not None and hasattr(value, "to_pydatetime"):
            d[key] = value.to_pydatetime()
    return d


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
    settings: Settings | None = None,
) -> Rendered:
    ctx = merge_context(
        store,
        customer_id=customer_id,
        user_id=user_id,
        deal_id=deal_id,
        mailbox_address=mailbox_address,
    )
    return render(
        template.subject,
        template.body_text,
        template.body_html,
        ctx,
        name=template.name,
        limits=Limits.of(settings),
    )


def check_syntax(name: str, subject: str, body_text: str | None, body_html: str | None) -> None:
    """Refuse a template that does not parse, before it is stored."""
    env = sandbox.environment()
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
