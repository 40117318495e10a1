"""The demo mailboxes' messages: built with ``email.message.EmailMessage``, deterministic.

``build_messages(company, total)`` returns ``SeedMessage``s (mailbox, folder, flags,
INTERNALDATE, raw bytes) covering what the sync has to cope with: customer threads in and
out (plain, HTML, attachments, non-ASCII names and subjects), co-customers on Cc, mail with
additional (non-primary) addresses and with a customer's old address after a change (S3),
internal mail (S5), drafts (S6), junk, newsletters and system mail, one message in two
mailboxes (S8), malformed messages (S12) and mail older than the backfill window (S2).
"""

from __future__ import annotations

import hashlib
import random
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from mailops.dev.demo.company import DOMAIN, Company, Customer, Deal, Staff

SEEN, ANSWERED, DRAFT, FLAGGED = r"\Seen", r"\Answered", r"\Draft", r"\Flagged"
FOLDERS = ("INBOX", "Sent", "Drafts", "Junk", "Archive")
DAYS = 60  # the demo's mail covers the last two months
#: bump when the generated data changes, so `mailops demo seed` reseeds instead of skipping
GENERATOR_VERSION = 3
SALES_LIST = "sales"  # sales@<domain>: a distribution list (no mailbox) delivering to the team


@dataclass
class SeedMessage:
    mailbox: str  # the demo mailbox (a sales person's address)
    folder: str
    flags: tuple[str, ...]
    date: datetime  # INTERNALDATE, aware UTC
    raw: bytes
    message_id: str | None  # the Message-ID header (None when deliberately missing)
    kind: str  # customer_in | customer_out | additional | old_address | shared | internal
    # | newsletter | system | junk | draft | malformed


SUBJECTS: dict[str, list[str]] = {
    "en": [
        "Enquiry about {project}",
        "Viewing of {unit} at {project}",
        "Offer for unit {unit}",
        "Documents for the reservation of {unit}",
        "Question about parking at {project}",
        "Financing confirmation for {unit}",
    ],
    "de": [
        "Anfrage zu {project}",
        "Besichtigung Wohnung {unit} – Terminvorschlag",
        "Angebot für Einheit {unit}",
        "Unterlagen für die Reservierung {unit}",
        "Frage zum Stellplatz – {project}",
        "Finanzierungsbestätigung für {unit}",
    ],
    "es": [
        "Consulta sobre {project}",
        "Visita al piso {unit} – ¿el sábado?",
        "Oferta para la unidad {unit}",
        "Documentación para la reserva de {unit}",
        "Pregunta sobre el garaje en {project}",
        "Confirmación de financiación {unit}",
    ],
    "pl": [
        "Zapytanie o {project}",
        "Oglądanie mieszkania {unit} – termin",
        "Oferta na lokal {unit}",
        "Dokumenty do rezerwacji {unit}",
        "Pytanie o miejsce parkingowe – {project}",
        "Potwierdzenie finansowania {unit}",
    ],
    "fr": [
        "Demande d'information – {project}",
        "Visite de l'appartement {unit} – créneau",
        "Offre pour le lot {unit}",
        "Documents pour la réservation du {unit}",
        "Question sur le parking – {project}",
        "Confirmation du financement {unit}",
    ],
}
GREETING = {
    "en": "Dear {first},",
    "de": "Hallo {first},",
    "es": "Hola {first}:",
    "pl": "Dzień dobry {first},",
    "fr": "Bonjour {first},",
}
SIGNOFF = {
    "en": "Best regards",
    "de": "Viele Grüße",
    "es": "Un saludo",
    "pl": "Pozdrawiam serdecznie",
    "fr": "Bien cordialement",
}
CUSTOMER_LINES = {
    "en": [
        "we are very interested in {unit} at {project}.",
        "could you send us the floor plan and the service charges?",
        "is the balcony south facing?",
        "we would like to come for a second viewing next week.",
        "our bank asked for the final price list for {unit}.",
        "thank you for the tour yesterday, we loved the light in the living room.",
    ],
    "de": [
        "wir interessieren uns sehr für die Wohnung {unit} im Projekt {project}.",
        "könnten Sie uns den Grundriss und die Nebenkosten schicken?",
        "ist der Balkon nach Süden ausgerichtet?",
        "wir würden gerne nächste Woche noch einmal vorbeikommen.",
        "unsere Bank möchte die endgültige Preisliste für {unit} sehen.",
        "vielen Dank für die Führung gestern – die Küche hat uns begeistert.",
    ],
    "es": [
        "estamos muy interesados en el piso {unit} de {project}.",
        "¿nos podría enviar el plano y los gastos de comunidad?",
        "¿la terraza está orientada al sur?",
        "nos gustaría hacer una segunda visita la semana que viene.",
        "el banco nos pide la lista de precios definitiva de {unit}.",
        "gracias por la visita de ayer, nos encantó la luz del salón.",
    ],
    "pl": [
        "jesteśmy bardzo zainteresowani mieszkaniem {unit} w {project}.",
        "czy mogą Państwo przesłać rzut mieszkania i wysokość czynszu?",
        "czy balkon jest od strony południowej?",
        "chcielibyśmy przyjść jeszcze raz w przyszłym tygodniu.",
        "bank prosi o ostateczny cennik dla {unit}.",
        "dziękujemy za wczorajsze oprowadzenie – salon jest piękny.",
    ],
    "fr": [
        "nous sommes très intéressés par l'appartement {unit} à {project}.",
        "pourriez-vous nous envoyer le plan et les charges de copropriété ?",
        "le balcon est-il orienté plein sud ?",
        "nous aimerions faire une deuxième visite la semaine prochaine.",
        "notre banque demande la grille de prix définitive pour {unit}.",
        "merci pour la visite d'hier, la luminosité du séjour nous a séduits.",
    ],
}
SALES_LINES = [
    "thank you for your message about {unit}.",
    "please find the updated floor plan and price list for {project} attached.",
    "I have reserved Saturday 11:00 for a viewing of {unit}; does that suit you?",
    "the service charges for {unit} are about 3.10 EUR per m² and month.",
    "the developer confirmed the handover for the second quarter.",
    "I have asked our notary to prepare the reservation agreement.",
    "yes, the balcony faces south-west and gets the evening sun.",
    "just a quick follow-up: do you have any further questions about {unit}?",
]
INTERNAL_SUBJECTS = [
    "Handover: {customer} while I am on leave",
    "Viewing schedule {project} next week",
    "Price list update {project}",
    "Team meeting Thursday – agenda",
    "Can you cover my 14:00 viewing?",
    "Commission statement {month}",
]
NEWSLETTERS = [
    (
        "Property Weekly",
        "news@propertyweekly.test",
        "Property Weekly: interest rates and the housing market",
    ),
    (
        "Builders Digest",
        "digest@buildersdigest.test",
        "Builders Digest – new regulations for energy efficiency",
    ),
    (
        "Immobilien Aktuell",
        "newsletter@immobilien-aktuell.test",
        "Immobilien Aktuell: Marktbericht für Käufer",
    ),
]
JUNK = [
    ("Lucky Winner Dept", "winner@prize-claims.test", "You have WON a €1,000,000 villa!!!"),
    ("Crypto Riches", "profit@crypto-riches.test", "Double your money in 24 hours"),
    ("Pharmacy Online", "sales@cheap-pills.test", "Best prices – 90% off"),
    (
        "IT Support",
        "it-support@northwind-h0mes.test",
        "Your mailbox is full – verify your password",
    ),
]


class _Writer:
    def __init__(self, company: Company, rng: random.Random) -> None:
        self.company = company
        self.rng = rng
        self.now = company.now
        self.start = company.now - timedelta(days=DAYS)
        self.n = 0
        self.out: list[SeedMessage] = []

    # -- primitives ---------------------------------------------------------------------------
    def msgid(self, domain: str) -> str:
        self.n += 1
        digest = hashlib.sha1(f"{self.company.seed}:{self.n}".encode()).hexdigest()[:16]
        return f"<{digest}.{self.n}@{domain}>"

    def moment(self, lo: datetime, hi: datetime) -> datetime:
        """A working-hours moment between LO and HI (naive UTC)."""
        span = max(1, int((hi - lo).total_seconds()))
        at = lo + timedelta(seconds=self.rng.randrange(span))
        if not 7 <= at.hour < 20:
            at = at.replace(hour=self.rng.randint(8, 18))
        return min(at, hi)

    def later(self, after: datetime) -> datetime:
        return after + timedelta(minutes=self.rng.choice([15, 40, 90, 180, 600, 1500, 2900, 4300]))

    def compose(
        self,
        *,
        sender: Address,
        to: Sequence[Address],
        subject: str,
        text: str,
        date: datetime,
        msgid: str,
        cc: Sequence[Address] = (),
        html: str | None = None,
        attachments: Sequence[tuple[bytes, str, str, str]] = (),
        in_reply_to: str | None = None,
        references: Sequence[str] = (),
        headers: dict[str, str] | None = None,
    ) -> EmailMessage:
        msg = EmailMessage(policy=policy.SMTP)
        msg["From"] = sender
        msg["To"] = tuple(to)
        if cc:
            msg["Cc"] = tuple(cc)
        msg["Subject"] = subject
        msg["Date"] = format_datetime(date.replace(tzinfo=UTC))
        msg["Message-ID"] = msgid
        if in_reply_to:
            msg["In-Reply-To"] = in_reply_to
            msg["References"] = " ".join(references)
        for name, value in (headers or {}).items():
            msg[name] = value
        msg.set_content(text)
        if html is not None:
            msg.add_alternative(html, subtype="html")
        for data, maintype, subtype, filename in attachments:
            msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
        self.fix_boundaries(msg)
        return msg

    def fix_boundaries(self, msg: EmailMessage) -> None:
        """Deterministic MIME boundaries (the stdlib draws random ones)."""
        for i, part in enumerate(msg.walk()):
            if part.is_multipart():
                part.set_boundary(f"=_northwind_{self.company.seed}_{self.n}_{i}")

    def add(
        self,
        mailbox: str,
        folder: str,
        flags: Sequence[str],
        date: datetime,
        msg: EmailMessage,
        kind: str,
        raw: bytes | None = None,
    ) -> None:
        self.out.append(
            SeedMessage(
                mailbox=mailbox,
                folder=folder,
                flags=tuple(flags),
                date=date.replace(tzinfo=UTC),
                raw=raw if raw is not None else msg.as_bytes(),
                message_id=msg["Message-ID"],
                kind=kind,
            )
        )

    # -- content ------------------------------------------------------------------------------
    def topic(self, customer: Customer) -> tuple[str, str, Deal | None]:
        deals = self.company.deals_of(customer.id)
        deal = self.rng.choice(deals) if deals else None
        if deal:
            return deal.project, deal.unit, deal
        project = self.rng.choice(["Harbour View", "Linden Park", "Riverside Lofts"])
        unit = f"{self.rng.choice('ABCD')}-{self.rng.randint(1, 6)}{self.rng.randint(1, 12):02d}"
        return project, unit, None

    def customer_text(self, c: Customer, sales: Staff, project: str, unit: str) -> str:
        lines = self.rng.sample(CUSTOMER_LINES[c.language], 2)
        body = " ".join(_sentence(line, project, unit) for line in lines)
        greeting = GREETING[c.language].format(first=sales.first)
        return f"{greeting}\n\n{body}\n\n{SIGNOFF[c.language]},\n{c.name}\n"

    def sales_text(self, c: Customer, sales: Staff, project: str, unit: str) -> str:
        lines = self.rng.sample(SALES_LINES, 2)
        body = " ".join(_sentence(line, project, unit) for line in lines)
        greeting = GREETING[c.language].format(first=c.first)
        return f"{greeting}\n\n{body}\n\n{SIGNOFF['en']},\n{sales.name}\nNorthwind Homes · Sales\n"

    @staticmethod
    def html_of(text: str, signature_color: str = "#1f4e79") -> str:
        from html import escape

        paras = "".join(f"<p>{escape(p).replace(chr(10), '<br>')}</p>" for p in text.split("\n\n"))
        return (
            f'<html><body style="font-family:Arial,sans-serif">{paras}'
            f'<p style="color:{signature_color};font-size:small">Northwind Homes – '
            f'<a href="https://northwind-homes.test/projects">our projects</a></p></body></html>'
        )

    @staticmethod
    def quote(text: str, who: str, when: datetime) -> str:
        quoted = "\n".join("> " + line if line else ">" for line in text.strip().splitlines())
        return f"\n\nOn {when:%a, %d %b %Y %H:%M}, {who} wrote:\n{quoted}\n"

    def attachment(
        self, customer: Customer, unit: str, outbound: bool
    ) -> tuple[bytes, str, str, str]:
        if outbound:
            names = {
                "de": f"Angebot {unit} – Grundriss.pdf",
                "es": f"Oferta {unit} – plano.pdf",
                "pl": f"Oferta {unit} – rzut.pdf",
                "fr": f"Offre {unit} – plan.pdf",
                "en": f"Offer {unit} - floor plan.pdf",
            }
            return _pdf(f"Offer {unit}", self.rng), "application", "pdf", names[customer.language]
        if self.rng.random() < 0.5:
            return _png(self.rng), "image", "png", f"IMG_{self.rng.randint(1000, 9999)}.png"
        return (
            _pdf("Finanzierungsbestätigung", self.rng),
            "application",
            "pdf",
            "Finanzierungsbestätigung.pdf",
        )

    # -- customer threads ---------------------------------------------------------------------
    def thread(
        self,
        c: Customer,
        sales: Staff,
        start: datetime,
        *,
        address: str | None = None,
        end: datetime | None = None,
        length: int | None = None,
        inbound_first: bool | None = None,
        kind: str | None = None,
    ) -> int:
        """One customer thread between C (at ADDRESS, default the primary) and SALES."""
        rng = self.rng
        end = end or self.now - timedelta(minutes=5)
        address = address or c.email
        project, unit, deal = self.topic(c)
        co = [
            self.company.customer(cid) for cid in (deal.customer_ids if deal else []) if cid != c.id
        ]
        cc = [Address(p.name, addr_spec=p.email) for p in co] if co and rng.random() < 0.6 else []
        subject = rng.choice(SUBJECTS[c.language]).format(project=project, unit=unit)
        length = length or rng.choices([1, 2, 3, 4, 5, 6], [20, 30, 22, 14, 9, 5])[0]
        inbound = rng.random() < 0.55 if inbound_first is None else inbound_first
        cust_addr = Address(c.name, addr_spec=address)
        sales_addr = Address(sales.name, addr_spec=sales.email)
        at = start
        refs: list[str] = []
        prev_text, prev_who, prev_at = "", "", at
        made = 0
        pending: list[tuple[str, str, list[str], datetime, EmailMessage, str]] = []
        for i in range(length):
            if at > end:
                break
            domain = address.split("@")[1] if inbound else DOMAIN
            mid = self.msgid(domain)
            text = (self.customer_text if inbound else self.sales_text)(c, sales, project, unit)
            if i and rng.random() < 0.7:
                text += self.quote(prev_text, prev_who, prev_at)
            subj = (
                subject
                if i == 0
                else ("AW: " if inbound and c.language == "de" else "Re: ") + subject
            )
            html = None
            if rng.random() < (0.35 if not inbound else 0.15):
                html = self.html_of(text)
            attachments = []
            if rng.random() < (0.1 if not inbound else 0.06):
                attachments.append(self.attachment(c, unit, outbound=not inbound))
            msg = self.compose(
                sender=cust_addr if inbound else sales_addr,
                to=[sales_addr if inbound else cust_addr],
                cc=cc,
                subject=subj,
                text=text,
                html=html,
                attachments=attachments,
                date=at,
                msgid=mid,
                in_reply_to=refs[-1] if refs else None,
                references=refs,
            )
            this_kind = kind or ("customer_in" if inbound else "customer_out")
            if inbound:
                folder = "Archive" if rng.random() < 0.12 else "INBOX"
                flags = [SEEN] if (i < length - 1 or rng.random() < 0.7) else []
                if i < length - 1:
                    flags.append(ANSWERED)
                if rng.random() < 0.05:
                    flags.append(FLAGGED)
                received = at + timedelta(seconds=rng.randint(2, 40))
                pending.append((sales.email, folder, flags, received, msg, this_kind))
            else:
                pending.append((sales.email, "Sent", [SEEN], at, msg, this_kind))
            refs.append(mid)
            prev_text, prev_who, prev_at = text, (c.name if inbound else sales.name), at
            made += 1
            inbound = not inbound
            at = self.later(at)
        for mailbox, folder, flags, when, msg, k in pending:
            self.add(mailbox, folder, flags, when, msg, k)
        return made

    # -- everything else ----------------------------------------------------------------------
    def internal(
        self, sender: Staff, recipient: Staff, customer: Customer | None, at: datetime
    ) -> int:
        rng = self.rng
        subject = rng.choice(INTERNAL_SUBJECTS).format(
            customer=customer.name if customer else "my customers",
            project=rng.choice(["Harbour View", "Linden Park", "Seaview Terraces"]),
            month=f"{at:%B %Y}",
        )
        cc = []
        if customer is not None and rng.random() < 0.25:  # an introduction, customer on Cc (S5)
            cc = [Address(customer.name, addr_spec=customer.email)]
            subject = f"Introduction: {recipient.name} will look after your viewing"
        text = (
            f"Hi {recipient.first},\n\n"
            + (
                f"{customer.name} ({customer.email}) is interested in a second viewing. "
                if customer
                else ""
            )
            + "Could you take this one? Thanks!\n\n"
            + sender.first
            + "\n"
        )
        msg = self.compose(
            sender=Address(sender.name, addr_spec=sender.email),
            to=[Address(recipient.name, addr_spec=recipient.email)],
            cc=cc,
            subject=subject,
            text=text,
            date=at,
            msgid=self.msgid(DOMAIN),
        )
        raw = msg.as_bytes()
        made = 0
        mailboxes = {s.email for s in self.company.sales}
        if sender.email in mailboxes:
            self.add(sender.email, "Sent", [SEEN], at, msg, "internal", raw)
            made += 1
        if recipient.email in mailboxes:
            self.add(
                recipient.email, "INBOX", [SEEN], at + timedelta(seconds=3), msg, "internal", raw
            )
            made += 1
        return made

    def newsletter(self, sales: Staff, at: datetime) -> None:
        name, addr, subject = self.rng.choice(NEWSLETTERS)
        text = f"{subject}\n\nRead this issue online: https://{addr.split('@')[1]}/issue/{self.n}\n"
        html = (
            f"<html><body><h1>{subject}</h1><p>Mortgage rates moved again this week.</p>"
            f'<p onclick="track()">Read <a href="https://{addr.split("@")[1]}/i/{self.n}">online</a></p>'
            f"<script>track('{sales.email}')</script>"
            f'<img src="https://{addr.split("@")[1]}/pixel.gif?u={self.n}" width="1" height="1"></body></html>'
        )
        msg = self.compose(
            sender=Address(name, addr_spec=addr),
            to=[Address(sales.name, addr_spec=sales.email)],
            subject=subject,
            text=text,
            html=html,
            date=at,
            msgid=self.msgid(addr.split("@")[1]),
            headers={
                "List-Unsubscribe": f"<mailto:unsubscribe@{addr.split('@')[1]}>",
                "Precedence": "bulk",
            },
        )
        self.add(
            sales.email, "INBOX", [SEEN] if self.rng.random() < 0.5 else [], at, msg, "newsletter"
        )

    def system(self, sales: Staff, at: datetime) -> None:
        rng = self.rng
        kind = rng.choice(["calendar", "crm", "bounce"])
        me = Address(sales.name, addr_spec=sales.email)
        if kind == "calendar":
            msg = self.compose(
                sender=Address("Calendar", addr_spec=f"calendar-noreply@{DOMAIN}"),
                to=[me],
                subject=f"Invitation: Viewing Harbour View @ {at:%a %d %b %H:%M}",
                text="You have been invited to a viewing.\n",
                date=at,
                msgid=self.msgid(DOMAIN),
            )
            ics = (
                "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Northwind//Calendar//EN\r\nBEGIN:VEVENT\r\n"
                f"UID:{self.n}@{DOMAIN}\r\nDTSTART:{at:%Y%m%dT%H%M%SZ}\r\nSUMMARY:Viewing\r\n"
                "END:VEVENT\r\nEND:VCALENDAR\r\n"
            )
            msg.add_attachment(
                ics.encode(), maintype="text", subtype="calendar", filename="invite.ics"
            )
            self.fix_boundaries(msg)
        elif kind == "crm":
            msg = self.compose(
                sender=Address("CRM", addr_spec=f"noreply@crm.{DOMAIN}"),
                to=[me],
                subject=f"Task due today: call back {rng.choice(self.company.customers).name}",
                text="A task assigned to you is due today.\n",
                date=at,
                msgid=self.msgid(f"crm.{DOMAIN}"),
            )
        else:
            lost = rng.choice(self.company.customers)
            msg = self.compose(
                sender=Address("Mail Delivery System", addr_spec=f"MAILER-DAEMON@{DOMAIN}"),
                to=[me],
                subject="Undelivered Mail Returned to Sender",
                text=(
                    "This is the mail system at host mx.northwind-homes.test.\n\n"
                    f"I'm sorry to have to inform you that your message could not be delivered:\n"
                    f"<{lost.first.lower()}.typo@{lost.email.split('@')[1]}>: mailbox unknown\n"
                ),
                date=at,
                msgid=self.msgid(DOMAIN),
                headers={"Auto-Submitted": "auto-replied"},
            )
        self.add(sales.email, "INBOX", [SEEN], at, msg, "system")

    def junk(self, sales: Staff, at: datetime) -> None:
        name, addr, subject = self.rng.choice(JUNK)
        msg = self.compose(
            sender=Address(name, addr_spec=addr),
            to=[Address(sales.name, addr_spec=sales.email)],
            subject=subject,
            text="Click here: http://198.51.100.7/claim\n",
            html='<html><body><a href="http://198.51.100.7/claim">CLAIM NOW</a></body></html>',
            date=at,
            msgid=self.msgid(addr.split("@")[1]),
        )
        self.add(sales.email, "Junk", [], at, msg, "junk")

    def draft(self, c: Customer, sales: Staff, at: datetime) -> None:
        project, unit, _ = self.topic(c)
        msg = self.compose(
            sender=Address(sales.name, addr_spec=sales.email),
            to=[Address(c.name, addr_spec=c.email)],
            subject=f"Draft: next steps for {unit}",
            text=self.sales_text(c, sales, project, unit),
            date=at,
            msgid=self.msgid(DOMAIN),
        )
        self.add(sales.email, "Drafts", [DRAFT, SEEN], at, msg, "draft")

    def shared(self, c: Customer, to: Staff, other: Staff, at: datetime, archived: bool) -> None:
        """One customer message in two sales people's INBOX (S8): sent to the team's list
        address, which delivers to TO and OTHER (no mailbox address in the headers, so it is
        not internal mail, S5); when ARCHIVED, TO also filed a copy in Archive (one message,
        two folders)."""
        project, unit, _ = self.topic(c)
        msg = self.compose(
            sender=Address(c.name, addr_spec=c.email),
            to=[Address("Northwind Homes Sales", addr_spec=f"{SALES_LIST}@{DOMAIN}")],
            subject=SUBJECTS[c.language][0].format(project=project, unit=unit),
            text=self.customer_text(c, to, project, unit),
            date=at,
            msgid=self.msgid(c.email.split("@")[1]),
        )
        raw = msg.as_bytes()
        self.add(to.email, "INBOX", [SEEN], at + timedelta(seconds=5), msg, "shared", raw)
        self.add(other.email, "INBOX", [], at + timedelta(seconds=6), msg, "shared", raw)
        if archived:
            self.add(to.email, "Archive", [SEEN], at + timedelta(seconds=5), msg, "shared", raw)

    def malformed(self, c: Customer, sales: Staff, at: datetime, variant: int) -> None:
        """Messages a robust sync must survive (S12), all from a customer's primary address."""
        project, unit, _ = self.topic(c)
        base: dict[str, Any] = {
            "sender": Address(c.name, addr_spec=c.email),
            "to": [Address(sales.name, addr_spec=sales.email)],
            "date": at,
            "msgid": self.msgid(c.email.split("@")[1]),
        }
        latin1 = "Grüße aus Köln – die Wohnung gefällt uns sehr.\n".encode("latin-1", "replace")
        if variant == 0:  # no Date header
            msg = self.compose(subject=f"Ohne Datum: {unit}", text="Date header missing.\n", **base)
            del msg["Date"]
        elif variant == 1:  # no Message-ID header
            msg = self.compose(
                subject=f"No Message-ID: {unit}", text="Message-ID missing.\n", **base
            )
            del msg["Message-ID"]
        elif variant == 2:  # Latin-1 bytes declared as UTF-8
            msg = self.compose(subject=f"Zeichensatz kaputt {unit}", text="x", **base)
            msg.set_content(latin1, maintype="text", subtype="plain", cte="8bit")
            msg.set_param("charset", "utf-8")
        elif variant == 3:  # an unknown charset
            msg = self.compose(subject=f"Unknown charset {unit}", text="x", **base)
            msg.set_content(latin1, maintype="text", subtype="plain", cte="8bit")
            msg.set_param("charset", "x-klingon")
        elif variant == 4:  # an attachment whose base64 is broken
            msg = self.compose(
                subject=f"Scan {unit}",
                text="Scan attached.\n",
                attachments=[(_pdf("scan", self.rng), "application", "pdf", "scan.pdf")],
                **base,
            )
            for part in msg.iter_attachments():
                part.set_payload("JVBERi0xLjQK!!!not*base64@@@\n")
        elif variant == 5:  # raw 8-bit Latin-1 in the Subject and an unparseable Date
            msg = self.compose(subject=f"Stellplatz {unit}", text="8-bit header.\n", **base)
            legacy = message_from_bytes(msg.as_bytes(), policy=policy.compat32)
            legacy.replace_header(
                "Subject",
                "Rückfrage Stellplatz".encode("latin-1").decode("ascii", "surrogateescape"),
            )
            legacy.replace_header("Date", "Tuesday, sometime in the afternoon")
            raw = legacy.as_bytes(policy=policy.compat32.clone(linesep="\r\n"))
            self.add(sales.email, "INBOX", [], at, msg, "malformed", raw)
            return
        else:  # a truncated multipart message (connection dropped while the CRM exported it)
            msg = self.compose(
                subject=f"Unterlagen {unit}",
                text=self.customer_text(c, sales, project, unit),
                attachments=[(_png(self.rng), "image", "png", "grundriss.png")],
                **base,
            )
            raw = msg.as_bytes()
            self.add(sales.email, "INBOX", [], at, msg, "malformed", raw[: len(raw) * 2 // 3])
            return
        self.add(sales.email, "INBOX", [], at, msg, "malformed", msg.as_bytes())


def _sentence(line: str, project: str, unit: str) -> str:
    text = line.format(project=project, unit=unit)
    return text[0].upper() + text[1:]


def _png(rng: random.Random, size: int = 8) -> bytes:
    """A small real PNG (one colour)."""
    colour = bytes(rng.randrange(256) for _ in range(3))
    rows = b"".join(b"\x00" + colour * size for _ in range(size))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _pdf(title: str, rng: random.Random) -> bytes:
    """PDF-looking bytes (a header, some content, an EOF marker) of a few hundred bytes."""
    body = f"%PDF-1.4\n% {title} {rng.randrange(10**6)}\n1 0 obj << /Type /Catalog >> endobj\n"
    return (
        body.encode("latin-1", "replace")
        + bytes(rng.randrange(256) for _ in range(200))
        + b"\n%%EOF\n"
    )


def build_messages(company: Company, total: int = 3000) -> list[SeedMessage]:
    """About TOTAL messages (copies in several mailboxes count once per mailbox)."""
    rng = random.Random(f"{company.seed}:mail")
    w = _Writer(company, rng)
    sales = company.sales
    now, start = w.now - timedelta(minutes=5), w.start
    by_id = {s.id: s for s in company.staff}

    def someone_else(s: Staff) -> Staff:
        return rng.choice([x for x in sales if x is not s])

    # fixed specials first: S12 malformed, S8 shared, S3 old/additional addresses
    for variant in range(7 if total >= 100 else 3):
        c = rng.choice(company.customers)
        w.malformed(c, by_id[c.owner_user_id], w.moment(now - timedelta(days=20), now), variant)
    for i in range(3 if total >= 100 else 1):
        c = rng.choice(company.customers)
        owner = by_id[c.owner_user_id]
        at = w.moment(now - timedelta(days=25), now)
        w.shared(c, owner, someone_else(owner), at, archived=i == 0)
    for c in company.customers:
        owner = by_id[c.owner_user_id]
        if c.old_email and c.primary_since:
            change = c.primary_since
            w.thread(
                c,
                owner,
                w.moment(start, change - timedelta(days=4)),
                address=c.old_email,
                end=change,
            )
            w.thread(c, owner, w.moment(change, now), inbound_first=True)
            # mail still sent to the old address after the change: must not match (S3)
            w.thread(
                c,
                owner,
                w.moment(change, now),
                address=c.old_email,
                length=1,
                inbound_first=False,
                kind="old_address",
            )
        work = [a for a in c.additional if a != c.old_email]
        if work and rng.random() < 0.6:  # mail with an additional address: no match (S3)
            w.thread(c, owner, w.moment(start, now), address=work[0], kind="additional")

    # the rest of the budget
    budget = {
        "internal": total * 8 // 100,
        "newsletter": total * 6 // 100,
        "system": total * 3 // 100,
        "junk": total * 5 // 100,
        "draft": max(2, total * 2 // 100),
    }
    customer_budget = total - sum(budget.values()) - len(w.out)
    order = rng.sample(company.customers, len(company.customers))
    i = 0
    made = 0
    while made < customer_budget:
        c = order[i % len(order)]
        i += 1
        owner = by_id[c.owner_user_id]
        sales_person = owner if rng.random() < 0.9 else someone_else(owner)
        made += w.thread(c, sales_person, w.moment(start, now))
    made = 0
    while made < budget["internal"]:
        sender = rng.choice([*sales, by_id["u-margaret"]])
        recipient = rng.choice([x for x in sales if x is not sender])
        customer = rng.choice(company.customers) if rng.random() < 0.6 else None
        made += w.internal(sender, recipient, customer, w.moment(start, now))
    for _ in range(budget["newsletter"]):
        w.newsletter(rng.choice(sales), w.moment(start, now))
    for _ in range(budget["system"]):
        w.system(rng.choice(sales), w.moment(start, now))
    for _ in range(budget["junk"]):
        w.junk(rng.choice(sales), w.moment(start, now))
    for _ in range(budget["draft"]):
        c = rng.choice(company.customers)
        w.draft(c, by_id[c.owner_user_id], w.moment(now - timedelta(days=14), now))
    w.out.sort(key=lambda m: (m.mailbox, m.folder, m.date))
    return w.out
