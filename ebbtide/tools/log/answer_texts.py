"""The words of an erasure answer in Norwegian (``nb``) and English (``en``).

Quotes are the seeds' own words, verbatim, in the language the seed is written in: the ISP's
English policy (seeds 000, 001), its Norwegian counterparts (002, 004) and the Norwegian
data-processing agreement (003). Everything else in Norwegian is our translation of the policy's
English text (``streams/policy/retention.v1.toml``), and the English rendering of seed 003 is
ours too; the page says so where it shows them.
"""

from __future__ import annotations

from dataclasses import dataclass

LANGUAGES = ("nb", "en")


@dataclass(frozen=True)
class Quote:
    """A seed's own words: which seed, which section, the text, and its language."""

    seed: str
    section: str
    text: str
    lang: str
    translation: str | None = None  # ours, into the other language, where the seed has no text in it


_S001 = "How long do we store your personal data"
_S002 = "Hvor lenge vi oppbevarer dine personopplysninger"
_S004 = "Sletting"

# rule id -> language -> the clause the page cites for it
QUOTES: dict[str, dict[str, Quote]] = {
    "account": {
        "en": Quote(
            "seed 001",
            _S001,
            "Your personal data regarding client account is stored as long as you remain our client and "
            "at least 3 years after the services and client account is cancelled.",
            "en",
        ),
        "nb": Quote(
            "seed 002",
            _S002,
            "Dine personopplysninger relatert til kundekontakt blir lagret så lenge du er kunde hos oss, "
            "og i minst 3 år etter at tjenestene og kundeforholdet er avsluttet.",
            "nb",
        ),
    },
    "bookkeeping": {
        "en": Quote(
            "seed 001",
            _S001,
            "Personal data regarding invoices and payment are kept at least 5 years, as required by "
            "Norwegian law.",
            "en",
        ),
        "nb": Quote(
            "seed 002",
            _S002,
            "Personopplysninger knyttet til fakturaer og betaling beholdes i minst 5 år, slik det er "
            "påkrevd i henhold til norsk regnskapslovgivning.",
            "nb",
        ),
    },
    "domain": {
        "en": Quote(
            "seed 001",
            _S001,
            "Your personal data related to domain name will be stored as long as the domain is registered.",
            "en",
        ),
        "nb": Quote(
            "seed 002",
            _S002,
            "Dine personopplysninger relatert til domenenavn blir lagret så lenge domenet er registrert.",
            "nb",
        ),
    },
    "certificate": {
        "en": Quote(
            "seed 001",
            _S001,
            "Your personal data related to SSL certificate will be stored as long as the certificate is "
            "valid.",
            "en",
        ),
        "nb": Quote(
            "seed 002",
            _S002,
            "Dine personopplysninger relatert til SSL sertifikat blir lagret så lenge sertifikatet er "
            "gyldig.",
            "nb",
        ),
    },
    "logs": {
        "en": Quote(
            "seed 000",
            "Storage and deletion",
            "Information that is no longer necessary for the purpose for which it was stored will be "
            "deleted on an ongoing basis.",
            "en",
        ),
        "nb": Quote(
            "seed 002",
            "Hvordan dine personopplysninger brukes",
            "Det blir også brukt for å oppdage, forhindre eller på annen måte adressere svindel, "
            "sikkerhets- og tekniske problemer.",
            "nb",
        ),
    },
    "correspondence": {
        "en": Quote(
            "seed 000",
            "Storage and deletion",
            "When you delete or cancel services, some personal data, primarily your contact information, "
            "order and invoice history, and copies of correspondence, will remain in our register to the "
            "extent necessary to protect legal rights or legal requirements for documentation.",
            "en",
        ),
        "nb": Quote(
            "seed 004",
            _S004,
            "Vi kan også være tvunget til å beholde dine data om det f. eks behøves for å oppfylle "
            "rettslige forpliktelser, kreve rettslig påstand, eller håndheve våre aktive avtaler.",
            "nb",
        ),
    },
    "marketing": {
        "en": Quote(
            "seed 000",
            "Trustpilot A/S",
            "Trustpilot only receives your email address, and you can unsubscribe at any time.",
            "en",
        ),
        "nb": Quote("seed 004", _S004, "Du har innvending mot behandling for direkte markedsføring", "nb"),
    },
    "processor": {
        "nb": Quote(
            "seed 003",
            "13. Ved opphør",
            "Kunde aksepterer at Leverandør sletter alle data ved opphør, inkludert eventuelle "
            "sikkerhetskopier, etter at siste avtaleperiode har løpt ut",
            "nb",
        ),
    },
}
# Seed 003 is in Norwegian only: the English page quotes it with our translation.
QUOTES["processor"]["en"] = Quote(
    "seed 003",
    "13. Ved opphør",
    QUOTES["processor"]["nb"].text,
    "nb",
    translation="The customer accepts that the supplier deletes all data on termination, including any "
    "backups, after the last agreement period has run out",
)

# The right itself, at the top of the page.
RIGHT: dict[str, Quote] = {
    "nb": Quote(
        "seed 004",
        _S004,
        "Under visse omstendigheter har du krav på å be om sletting av dine personlige opplysninger.",
        "nb",
    ),
    "en": Quote(
        "seed 001",
        "How we delete your personal data",
        "Personal data that is no longer necessary for the purpose for which it was stored will be "
        "deleted continuously.",
        "en",
    ),
}

# Our Norwegian rendering of each rule's reason and legal basis (the English is the policy's own,
# as the answer records it).
WHY_NB: dict[str, str] = {
    "account": "kundedata beholdes i 3 år etter at kundeforholdet og alle tjenestene er avsluttet",
    "bookkeeping": "regnskapsopplysninger beholdes i 5 år fra utløpet av regnskapsåret "
    "(bokføringsloven § 13)",
    "domain": "beholdes så lenge domenet er registrert; slettes 30 dager etter at det er frigitt "
    "(utløpt, slettet eller flyttet ut)",
    "certificate": "beholdes så lenge sertifikatet er gyldig; slettes når det utløper eller trekkes tilbake",
    "logs": "serverlogger beholdes i 90 dager etter dagen de ble skrevet, likt for alle; en dags logger "
    "inneholder alle kunders linjer, så linjene som kan nevne deg (f.eks. IP-adressen din) beholdes, "
    "brukes bare til sikkerhet og slettes med sin dag",
    "correspondence": "beholdes bare så lenge et krav kan fremmes: den alminnelige foreldelsesfristen er "
    "3 år (foreldelsesloven § 2), regnet fra kundeforholdet ble avsluttet",
    "marketing": "markedsføringsdata slettes så snart samtykket er trukket tilbake",
    "processor": "data du lagrer hos oss på hostingtjenesten slettes, sikkerhetskopier inkludert, når "
    "siste betalte avtaleperiode er over",
}
BASIS_NB: dict[str, str] = {
    "account": "GDPR art. 17(3)(e): fastsettelse, utøvelse eller forsvar av rettskrav",
    "bookkeeping": "GDPR art. 6(1)(c) og 17(3)(b): rettslig forpliktelse",
    "domain": "GDPR art. 6(1)(b): avtale (registrantdata som registerets vilkår krever)",
    "certificate": "GDPR art. 6(1)(b): avtale",
    "logs": "GDPR art. 6(1)(f): berettiget interesse (sikkerhet, svindel og feilsøking)",
    "correspondence": "GDPR art. 17(3)(e): rettskrav",
    "marketing": "GDPR art. 6(1)(a) og 7(3): samtykke, som kan trekkes tilbake når som helst",
    "processor": "GDPR art. 28(3)(g): databehandleravtale (vi er databehandler, du er behandlingsansvarlig)",
}
DELETE_NB = "ingen regel pålegger oss å beholde dette"
# What suspends a deletion, as the recorded English reason says it -> our Norwegian note.
NOTES_NB = (
    ("legal hold", "en rettslig tilbakeholdelse (legal hold) stanser slettingen til den oppheves"),
    ("clock has not started", "fristen har ikke begynt å løpe ennå; beholdes så lenge det varer"),
    ("restricted", "behandlingen er begrenset til dette formålet"),
)

# Data categories: the seeds' own names where they have one (001 in English, 002 in Norwegian).
CATEGORY: dict[str, dict[str, str]] = {
    "client": {"en": "Client data", "nb": "Kundekontaktdata"},
    "domain_contact": {"en": "Domain contact data", "nb": "Kontaktdata for domenenavn"},
    "ssl_contact": {"en": "Contact data for SSL certificate", "nb": "Kontaktdata for SSL sertifikat"},
    "auto_collected": {"en": "Automatically collected data", "nb": "Automatisk innsamlede data"},
    "payment": {"en": "Payment information", "nb": "Betalingsopplysninger"},
    "invoice": {"en": "Invoices and order history", "nb": "Fakturaer og ordrehistorikk"},
    "correspondence": {"en": "Copies of correspondence", "nb": "Kopier av korrespondanse"},
    "marketing": {
        "en": "Marketing (review invitations, newsletters)",
        "nb": "Markedsføring (invitasjoner til anmeldelser, nyhetsbrev)",
    },
    "hosted": {"en": "Data you store on our hosting", "nb": "Data du lagrer på hostingtjenesten"},
}

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Answer to your erasure request",
        "intro": "You asked us to delete your personal data. This is what we delete, what we must keep, "
        "why, and until when.",
        "request": "Request",
        "subject": "Customer",
        "answered": "Answered",
        "due": "Due by",
        "policy": "Policy version",
        "deleted": "What we delete",
        "kept": "What we keep",
        "none": "Nothing.",
        "record": "Record",
        "data": "Data",
        "why": "Why",
        "basis": "Legal basis",
        "until": "Deleted by",
        "clause": "Our promise",
        "stopped": "not yet set: its clock has not started or is stopped",
        "recorded": "as recorded",
        "ours": "our translation",
        "quoted": "quoted in Norwegian: the seed has no English text",
        "times": "Times are in Norwegian time (Europe/Oslo).",
        "translated": "Quotes are the words of our privacy policy and data-processing agreement (the "
        "seeds); the reasons and legal bases are our policy's own words, as the answer recorded them.",
    },
    "nb": {
        "title": "Svar på kravet ditt om sletting",
        "intro": "Du har bedt oss slette personopplysningene dine. Her er hva vi sletter, hva vi må "
        "beholde, hvorfor, og til når.",
        "request": "Forespørsel",
        "subject": "Kunde",
        "answered": "Besvart",
        "due": "Frist",
        "policy": "Policyversjon",
        "deleted": "Dette sletter vi",
        "kept": "Dette beholder vi",
        "none": "Ingenting.",
        "record": "Post",
        "data": "Opplysninger",
        "why": "Hvorfor",
        "basis": "Rettslig grunnlag",
        "until": "Slettes innen",
        "clause": "Vårt løfte",
        "stopped": "ikke fastsatt ennå: fristen har ikke begynt å løpe eller er stanset",
        "recorded": "slik det er registrert (engelsk)",
        "ours": "vår oversettelse",
        "quoted": "sitert på engelsk: kilden har ingen norsk tekst",
        "times": "Tidspunkter er i norsk tid (Europe/Oslo).",
        "translated": "Sitatene er ordene i personvernerklæringen og databehandleravtalen vår (kildene). "
        "Begrunnelsene, de rettslige grunnlagene og navnene på opplysningene som kilden ikke selv gir, er "
        "vår oversettelse av policyens engelske tekst, som står ved siden av slik svaret registrerte den.",
    },
}
