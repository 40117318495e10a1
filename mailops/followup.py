"""F1: the follow-up assistant -- threads waiting for us or for the customer, draft a
follow-up for the user to review, log what became of each suggestion.

- **Waiting for our reply**: the customer wrote last in a thread (R3's thread: first
  ``References`` id, else ``In-Reply-To``, else the message) and nobody answered for
  ``reply_hours`` business hours (Mon-Fri, ``day_start``-``day_end`` in ``tz``).
- **Waiting for the customer**: we wrote last and the customer has not answered for
  ``customer_days`` business days (business hours / the length of a work day).

A draft is a normal store-only draft (``send/drafts.py``), a reply to the thread's last
message: the user reviews, edits and sends it like any draft. mailops never sends it.

The text comes from a pluggable model: an OpenAI-compatible chat endpoint when
``llm_url`` (``MAILOPS_LLM_URL``) is set, with its key from the secrets store
(``mailops followup llm-key``), else -- and whenever the endpoint fails -- a deterministic
template from the thread's facts (customer, deal, unit, last subject, days waiting, the
thread's language). What goes to a model is the thread's own messages only, quoted text cut,
every e-mail address but the customer's and ours and every other customer's name redacted.

Every suggestion is logged (``followup_suggestions``) and its outcome read back from the
draft: sent unchanged = ``sent_as_is``, sent after changes = ``edited``, the draft deleted
or ``mailops followup discard`` = ``discarded``; ``usefulness()`` is the measure.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from mailops.config import Settings
from mailops.errors import MailopsError
from mailops.permissions import Viewer, scope_for
from mailops.store import Store
from mailops.store import followups as fstore

__all__ = [
    "LLM_KEY_REF",
    "Facts",
    "Suggestion",
    "detect_language",
    "discard",
    "draft_followup",
    "draft_waiting",
    "refresh_outcomes",
    "suggestions",
    "template_draft",
    "usefulness",
    "waiting_threads",
]

LLM_KEY_REF = "llm/api_key"  # the secrets-store reference of the model endpoint's key
KINDS = {"our_reply": "waiting for our reply", "customer_reply": "waiting for the customer"}


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _viewer(store: Store, who: Viewer | str | None) -> Viewer:
    return who if isinstance(who, Viewer) else scope_for(store, who)


# -- which threads wait ----------------------------------------------------------------
def waiting_threads(
    store: Store,
    who: Viewer | str | None,
    *,
    reply_hours: float = 8.0,
    customer_days: float = 3.0,
    now: datetime | None = None,
    day_start: int = 9,
    day_end: int = 17,
    tz: str = "UTC",
) -> pd.DataFrame:
    """Threads waiting for our reply or for the customer, longest waiting first."""
    from mailops.reports.activity import business_hours_between

    viewer = _viewer(store, who)
    now = now or _now()
    last = fstore.last_per_thread(store, viewer)
    day = float(day_end - day_start)
    rows = []
    for r in last.itertuples():
        hours = business_hours_between(
            pd.Timestamp(r.occurred_at).to_pydatetime(),
            now,
            day_start=day_start,
            day_end=day_end,
            tz=tz,
        )
        if r.direction == "inbound" and hours >= reply_hours:
            kind = "our_reply"
        elif r.direction == "outbound" and hours / day >= customer_days:
            kind = "customer_reply"
        else:
            continue
        rows.append(
            {
                "kind": kind,
                "customer_id": r.customer_id,
                "customer": r.customer,
                "deal_id": r.deal_id,
                "user_id": r.user_id,
                "mailbox_id": r.mailbox_id,
                "last_at": r.occurred_at,
                "last_subject": r.subject,
                "business_hours": round(hours, 1),
                "business_days": round(hours / day, 1),
                "thread": r.thread,
                "last_message_id": r.message_id,
            }
        )
    df = pd.DataFrame(
        rows,
        columns=[
            "kind",
            "customer_id",
            "customer",
            "deal_id",
            "user_id",
            "mailbox_id",
            "last_at",
            "last_subject",
            "business_hours",
            "business_days",
            "thread",
            "last_message_id",
        ],
    )
    if df.empty:
        return df
    df = df.merge(fstore.outcomes_by_message(store), on="last_message_id", how="left")
    df["suggestion_id"] = df["suggestion_id"].astype("Int64")
    # one follow-up per thread: a couple on one thread (both primary customers) is one
    # conversation; the customer with a suggestion already, else the first id, stands for it
    df = df.sort_values(["thread", "suggestion_id", "customer_id"], na_position="last")
    df = df.drop_duplicates(subset=["thread", "kind"], keep="first")
    return df.sort_values(["business_hours", "customer_id"], ascending=[False, True]).reset_index(
        drop=True
    )


# -- the thread's facts, and what a model may see ---------------------------------------
_STOPWORDS = {
    "en": [
        "the",
        "and",
        "you",
        "for",
        "with",
        "your",
        "this",
        "that",
        "have",
        "are",
        "thank",
        "please",
        "regards",
        "would",
        "is",
        "of",
        "to",
    ],
    "de": [
        "und",
        "der",
        "die",
        "das",
        "ist",
        "nicht",
        "mit",
        "ich",
        "sie",
        "ihnen",
        "vielen",
        "dank",
        "grüßen",
        "wir",
        "für",
        "eine",
        "zu",
    ],
    "es": [
        "el",
        "la",
        "los",
        "las",
        "que",
        "de",
        "por",
        "para",
        "con",
        "usted",
        "gracias",
        "saludos",
        "una",
        "muy",
        "es",
        "y",
        "en",
    ],
    "fr": [
        "le",
        "la",
        "les",
        "des",
        "est",
        "pour",
        "avec",
        "vous",
        "merci",
        "cordialement",
        "une",
        "nous",
        "bonjour",
        "et",
        "de",
    ],
    "pl": [
        "i",
        "w",
        "na",
        "nie",
        "się",
        "jest",
        "z",
        "do",
        "że",
        "dziękuję",
        "pozdrawiam",
        "czy",
        "pan",
        "pani",
        "jak",
    ],
}


def detect_language(text: str) -> str:
    """The thread's language among the demo company's (en, de, es, fr, pl) by stop words;
    ``en`` when nothing stands out."""
    words = re.findall(r"[a-zäöüßéèêàçñáíóúąćęłńśźż]+", (text or "").lower())
    if not words:
        return "en"
    counts = {lang: sum(w in set(sw) for w in words) for lang, sw in _STOPWORDS.items()}
    best = max(counts, key=lambda k: (counts[k], k == "en"))
    return best if counts[best] > 0 else "en"


@dataclass
class Facts:
    customer_id: str
    customer: str
    first_name: str
    kind: str
    last_subject: str
    days_waiting: int
    language: str
    sales_name: str
    project: str | None = None
    unit: str | None = None
    deal_id: str | None = None
    thread_text: str = field(default="", repr=False)  # already stripped for a model


def _unquoted(body: str | None, limit: int = 2000) -> str:
    lines = []
    for line in (body or "").splitlines():
        if line.lstrip().startswith(">"):
            continue
        if re.match(
            r"^\s*(On .+ wrote:|Am .+ schrieb .+:|El .+ escribió:|Le .+ a écrit :)\s*$", line
        ):
            break
        lines.append(line)
    return "\n".join(lines).strip()[:limit]


def redact(text: str, keep_addresses: set[str], other_names: list[str]) -> str:
    """Only this thread's people remain: every other e-mail address and every other
    customer's name becomes a placeholder."""
    text = re.sub(
        r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+",
        lambda m: m.group(0) if m.group(0).lower() in keep_addresses else "[address]",
        text,
    )
    names = sorted({n for n in other_names if n and len(n) >= 4}, key=len, reverse=True)
    for i in range(0, len(names), 200):
        pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, names[i : i + 200])) + r")\b", re.I)
        text = pattern.sub("[other customer]", text)
    return text


def thread_facts(store: Store, thread_row: Any, now: datetime | None = None) -> Facts:
    """Facts of one waiting thread (a row of ``waiting_threads``)."""
    from mailops.store import directory as dirstore

    cust = dirstore.get_customer(store, thread_row.customer_id) or {}
    name = str(cust.get("name") or thread_row.customer_id)
    user = dirstore.find_user(store, thread_row.user_id) if thread_row.user_id else None
    from mailops.store import mailboxes as mbstore

    row = (
        dirstore.get_deal(store, thread_row.deal_id)
        if isinstance(thread_row.deal_id, str)
        else None
    )
    deal = [(row.get("project"), row.get("unit"))] if row else []
    # P1: the thread is read as the user it is drafted for (the scheduler when nobody's)
    reader = _viewer(store, thread_row.user_id if isinstance(thread_row.user_id, str) else None)
    msgs = fstore.thread_messages(store, thread_row.customer_id, thread_row.thread, viewer=reader)
    own = {str(cust.get("primary_address") or "").lower()}
    own |= mbstore.addresses_of_owner(store, thread_row.user_id)
    others = dirstore.other_customer_names(store, thread_row.customer_id)
    parts = []
    for m in msgs.itertuples():
        who = "Customer" if m.direction == "inbound" else "Us"
        parts.append(
            f"[{who}, {pd.Timestamp(m.occurred_at):%Y-%m-%d}] Subject: {m.subject or ''}\n{_unquoted(m.body_text)}"
        )
    raw_text = "\n\n".join(parts)
    theirs = msgs[msgs["direction"] == "inbound"] if not msgs.empty else msgs
    source = theirs if not theirs.empty else msgs  # the customer's own words decide
    lang_source = " ".join(
        f"{subj or ''} {_unquoted(body)}"
        for subj, body in zip(source["subject"], source["body_text"].fillna(""), strict=True)
    )
    since = pd.Timestamp(thread_row.last_at).to_pydatetime()
    return Facts(
        customer_id=thread_row.customer_id,
        customer=name,
        first_name=name.split()[0] if name.split() else name,
        kind=thread_row.kind,
        last_subject=str(thread_row.last_subject or ""),
        days_waiting=max(0, ((now or _now()) - since).days),
        language=detect_language(lang_source),
        sales_name=(user.name if user and user.name else "") or "",
        project=deal[0][0] if deal else None,
        unit=deal[0][1] if deal else None,
        deal_id=thread_row.deal_id if isinstance(thread_row.deal_id, str) else None,
        thread_text=redact(raw_text, {a for a in own if a}, others),
    )


# -- the text --------------------------------------------------------------------------
_TEMPLATES: dict[str, dict[str, str]] = {
    "en": {
        "greet": "Dear {first},",
        "our_reply": "thank you for your email about {topic}. I am looking into it and will get back to you with the details shortly.",
        "customer_reply": "I wanted to follow up on my email about {topic} from {days} days ago. Do you have any questions, or would you like to arrange a viewing?",
        "close": "Best regards,",
        "unit": "unit {unit} at {project}",
    },
    "de": {
        "greet": "Guten Tag {name},",
        "our_reply": "vielen Dank für Ihre Nachricht zu {topic}. Ich kümmere mich darum und melde mich in Kürze mit den Details.",
        "customer_reply": "ich möchte an meine E-Mail zu {topic} von vor {days} Tagen anknüpfen. Haben Sie noch Fragen, oder möchten Sie einen Besichtigungstermin vereinbaren?",
        "close": "Mit freundlichen Grüßen",
        "unit": "der Wohnung {unit} ({project})",
    },
    "es": {
        "greet": "Estimado/a {first}:",
        "our_reply": "gracias por su mensaje sobre {topic}. Lo estoy revisando y le responderé en breve con los detalles.",
        "customer_reply": "le escribo para dar seguimiento a mi correo sobre {topic} de hace {days} días. ¿Tiene alguna pregunta o desea concertar una visita?",
        "close": "Un saludo,",
        "unit": "la vivienda {unit} en {project}",
    },
    "fr": {
        "greet": "Bonjour {first},",
        "our_reply": "merci pour votre message concernant {topic}. Je m'en occupe et reviens vers vous très rapidement avec les détails.",
        "customer_reply": "je me permets de revenir vers vous au sujet de mon e-mail concernant {topic}, envoyé il y a {days} jours. Avez-vous des questions, ou souhaitez-vous organiser une visite ?",
        "close": "Cordialement,",
        "unit": "le logement {unit} à {project}",
    },
    "pl": {
        "greet": "Dzień dobry {first},",
        "our_reply": "dziękuję za wiadomość w sprawie {topic}. Sprawdzam szczegóły i wkrótce się odezwę.",
        "customer_reply": "nawiązuję do mojej wiadomości w sprawie {topic} sprzed {days} dni. Czy mają Państwo pytania albo chcieliby Państwo umówić się na oglądanie?",
        "close": "Z poważaniem,",
        "unit": "lokalu {unit} ({project})",
    },
}


def template_draft(f: Facts) -> str:
    """The deterministic draft: the same facts always give the same text."""
    t = _TEMPLATES.get(f.language, _TEMPLATES["en"])
    subject = re.sub(r"^\s*((re|aw|sv|odp|r)\s*:\s*)+", "", f.last_subject, flags=re.I).strip()
    if f.unit and f.project:
        topic = t["unit"].format(unit=f.unit, project=f.project)
    else:
        topic = f"“{subject}”" if subject else t["unit"].split(" ")[0]
    body = t[f.kind].format(topic=topic, days=f.days_waiting)
    lines = [t["greet"].format(first=f.first_name, name=f.customer), "", body, "", t["close"]]
    if f.sales_name:
        lines.append(f.sales_name)
    return "\n".join(lines) + "\n"


ChatFn = Callable[[str, list[dict[str, str]]], str]


def llm_chat(settings: Settings, key: str | None) -> ChatFn:
    """An OpenAI-compatible ``/chat/completions`` call (``llm_url`` is the API base, e.g.
    ``https://api.example.com/v1``, or the full endpoint)."""
    import requests

    url = settings.llm_url.rstrip("/")
    if not url.endswith("/chat/completions"):
        url += "/chat/completions"

    def chat(model: str, messages: list[dict[str, str]]) -> str:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        r = requests.post(
            url,
            headers=headers,
            data=json.dumps({"model": model, "messages": messages, "temperature": 0.2}),
            timeout=float(settings.llm_timeout),
        )
        r.raise_for_status()
        text = r.json()["choices"][0]["message"]["content"]
        if not isinstance(text, str) or not text.strip():
            raise ValueError("the model returned no text")
        return text.strip() + "\n"

    return chat


_LANG_NAMES = {"en": "English", "de": "German", "es": "Spanish", "fr": "French", "pl": "Polish"}


def model_messages(f: Facts) -> list[dict[str, str]]:
    """What a model is sent: instructions, the facts, the (redacted) thread -- nothing else."""
    facts = {
        "customer": f.customer,
        "deal": f"{f.project or ''} {f.unit or ''}".strip() or None,
        "last_subject": f.last_subject,
        "days_waiting": f.days_waiting,
        "situation": KINDS[f.kind],
        "sales_person": f.sales_name or None,
    }
    return [
        {
            "role": "system",
            "content": (
                "You draft a short, polite follow-up email for a sales person of a real-estate"
                f" developer. Write in {_LANG_NAMES.get(f.language, 'English')}. Output only the"
                " email body (greeting to sign-off), no subject line. Promise nothing about"
                " prices or dates that the thread does not state."
            ),
        },
        {
            "role": "user",
            "content": "Facts: "
            + json.dumps(facts, ensure_ascii=False)
            + "\n\nThread:\n"
            + f.thread_text,
        },
    ]


# -- drafting ---------------------------------------------------------------------------
@dataclass
class Suggestion:
    id: int
    draft_id: int
    kind: str
    customer_id: str
    model: str
    subject: str
    body: str
    note: str = ""


def _digest(subject: str | None, body: str | None) -> str:
    """Must equal ``store.followups.LIVE_OUTCOME``'s SQL digest."""
    return hashlib.sha256(f"{subject or ''}\n{body or ''}".encode()).hexdigest()


def _sender_mailbox(store: Store, user_id: str, preferred: int | None) -> int | None:
    from mailops.store.mailboxes import connected_choices

    ids = sorted(i for _, i in connected_choices(store, user_id))
    if preferred is not None and preferred in ids:
        return preferred
    return ids[0] if ids else None


def _text_for(
    store: Store, settings: Settings | None, f: Facts, chat: ChatFn | None
) -> tuple[str, str, str]:
    """(body, model label, note)."""
    if chat is None and settings is not None and settings.llm_url:
        from mailops.secrets import SecretStore

        secrets = SecretStore(settings)
        key = secrets.get(LLM_KEY_REF) if secrets.has(LLM_KEY_REF) else None
        chat = llm_chat(settings, key)
    if chat is not None:
        model = settings.llm_model if settings is not None else "model"
        try:
            return chat(model, model_messages(f)), f"llm:{model}", ""
        except Exception as e:  # noqa: BLE001 - any model failure: the template instead
            return (
                template_draft(f),
                "template",
                f"model failed ({type(e).__name__}); template draft",
            )
    return template_draft(f), "template", ""


def draft_followup(
    store: Store,
    settings: Settings | None,
    thread_row: Any,
    *,
    user_id: str | None = None,
    chat: ChatFn | None = None,
    now: datetime | None = None,
) -> Suggestion:
    """Draft a follow-up for one waiting thread (a row of ``waiting_threads``) and log the
    suggestion. The draft replies to the thread's last message; nothing is sent."""
    from mailops.send import drafts
    from mailops.send.reply import reply_subject

    uid = user_id or thread_row.user_id
    if not uid:
        raise MailopsError("no user to draft the follow-up for", code="usage")
    f = thread_facts(store, thread_row, now)
    body, model, note = _text_for(store, settings, f, chat)
    subject = reply_subject(f.last_subject)
    mailbox = _sender_mailbox(
        store, uid, int(thread_row.mailbox_id) if pd.notna(thread_row.mailbox_id) else None
    )
    with store.transaction():
        d = drafts.create(
            store,
            uid,
            mailbox=mailbox,
            customer_id=f.customer_id,
            subject=subject,
            body_text=body,
            deal_id=f.deal_id,
            reply_to=thread_row.last_message_id,
        )
        sid = fstore.insert_suggestion(
            store,
            user_id=uid,
            customer_id=f.customer_id,
            deal_id=f.deal_id,
            thread=thread_row.thread,
            kind=f.kind,
            last_message_id=thread_row.last_message_id,
            waiting_since=pd.Timestamp(thread_row.last_at).to_pydatetime(),
            language=f.language,
            model=model,
            draft_id=d.id,
            subject=subject,
            body_sha256=_digest(subject, body),
        )
    return Suggestion(sid, d.id, f.kind, f.customer_id, model, subject, body, note)


def draft_waiting(
    store: Store,
    settings: Settings | None,
    who: Viewer | str | None,
    *,
    customer: str | None = None,
    chat: ChatFn | None = None,
    now: datetime | None = None,
    limit: int | None = None,
    **thresholds: Any,
) -> list[Suggestion]:
    """Draft a follow-up for every waiting thread of the viewer (or of CUSTOMER) that has
    no suggestion yet for its last message, longest waiting first (at most LIMIT). A
    viewer drafts for his own threads only."""
    viewer = _viewer(store, who)
    df = waiting_threads(store, viewer, now=now, **thresholds)
    if customer is not None:
        from mailops.timeline import find_customer

        cid, _ = find_customer(store, customer)
        df = df[df["customer_id"] == cid]
    if viewer.user_id != "system" and not df.empty:
        df = df[df["user_id"] == viewer.user_id]
    out: list[Suggestion] = []
    for row in df.itertuples():
        if pd.notna(row.suggestion_id):
            continue  # already suggested for this very message
        if limit is not None and len(out) >= limit:
            break
        out.append(draft_followup(store, settings, row, chat=chat, now=now))
    return out


# -- outcomes and the measure -------------------------------------------------------------
def refresh_outcomes(store: Store) -> int:
    """Record the outcome of each pending suggestion whose draft was sent or deleted since
    (listing computes it live anyway; this keeps ``outcome_at``); returns how many."""
    decided = fstore.decided_pending(store)
    for sid, outcome in decided:
        fstore.set_outcome(store, sid, outcome)
    return len(decided)


def discard(store: Store, who: Viewer | str | None, suggestion_id: int) -> None:
    """The user does not want this follow-up: its draft is deleted, the outcome logged."""
    viewer = _viewer(store, who)
    rows = fstore.suggestion_row(store, suggestion_id)
    if not rows or (viewer.user_id != "system" and rows[0][0] != viewer.user_id):
        raise MailopsError(f"no suggestion {suggestion_id} of yours", code="unknown_suggestion")
    user_id, draft_id, outcome = rows[0]
    if outcome != "pending":
        raise MailopsError(
            f"suggestion {suggestion_id} is already {outcome}", code="suggestion_done"
        )
    with store.transaction():
        if draft_id is not None:
            from mailops.store.outbox import delete_unsent_draft

            delete_unsent_draft(store, draft_id)
        fstore.set_outcome(store, suggestion_id, "discarded")


def suggestions(store: Store, who: Viewer | str | None) -> pd.DataFrame:
    """The suggestion log the viewer may see (his own; a manager his team's), outcomes as
    the drafts tell them now (read-only: works on a ReadStore)."""
    viewer = _viewer(store, who)
    users = None if viewer.sees_all else sorted(viewer.visible_users or {viewer.user_id})
    return fstore.suggestion_frame(store, users)


def usefulness(log: pd.DataFrame) -> dict[str, Any]:
    """How useful the suggestions were: counts by outcome and the share of decided ones
    sent as they were drafted (sent as is / (sent as is + edited + discarded))."""
    counts = {
        k: int((log["outcome"] == k).sum()) if not log.empty else 0
        for k in ("pending", "sent_as_is", "edited", "discarded")
    }
    decided = counts["sent_as_is"] + counts["edited"] + counts["discarded"]
    counts["suggested"] = int(len(log))
    counts["decided"] = decided
    rate = (counts["sent_as_is"] / decided) if decided else None
    used = ((counts["sent_as_is"] + counts["edited"]) / decided) if decided else None
    return {**counts, "sent_as_is_rate": rate, "used_rate": used}
