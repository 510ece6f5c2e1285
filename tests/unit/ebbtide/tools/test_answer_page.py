"""`ebbtide answer get`: the erasure answer for the person, in Norwegian and English, as text and
as a self-contained HTML page that escapes everything; every rule has its seed clause and our
Norwegian words (no broker)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from ebbtide.schemas import ERASURE_ANSWER, codec_for
from ebbtide.streams.policy.rules import rules_policy
from ebbtide.tools.log import answer_texts as texts
from ebbtide.tools.log.answer_page import render_html, render_text

HOSTILE = '<script>alert("x")</script>'


def item(record: str, category: str, action: str, rule: str, reason: str, **more: Any) -> dict[str, Any]:
    return {
        "record": record,
        "category": category,
        "action": action,
        "rule_id": rule,
        "basis": more.get("basis"),
        "reason": reason,
        "until": more.get("until"),
    }


def answer(*items: dict[str, Any]) -> dict[str, Any]:
    """An answer as the codec decodes it (encoded and decoded: the schema's shape)."""
    codec = codec_for(ERASURE_ANSWER)
    return codec.decode(
        codec.encode(
            {
                "request_id": "req-1",
                "subject_id": "cust-20",
                "answered_at": datetime(2025, 4, 18, 4, tzinfo=UTC),
                "due_by": datetime(2025, 5, 18, 4, tzinfo=UTC),
                "policy_version": "v1+abc",
                "items": list(items),
            }
        )
    )


KEPT = item(
    "billing_db/invoice/84",
    "invoice",
    "KEEP",
    "bookkeeping",
    "bookkeeping records are kept 5 years from the end of the financial year",
    basis="GDPR art. 6(1)(c) and 17(3)(b): legal obligation",
    until="2027-12-31T23:00:00Z",
)
DELETED = item(
    "support_desk/correspondence/33",
    "correspondence",
    "DELETE",
    "correspondence",
    "no rule obliges us to keep it",
)
HELD = item(
    "customer_db/correspondence/34",
    "correspondence",
    "KEEP",
    "correspondence",
    "legal hold h-1: deletion suspended until released (seed 001 'How we share')",
    basis="GDPR art. 17(3)(e): legal claims",
)
HOSTED = item(
    "hosting/hosted/site-1",
    "hosted",
    "KEEP",
    "processor",
    "hosted data is deleted",
    basis="GDPR art. 28(3)(g)",
    until="2026-01-31T23:00:00Z",
)


def test_the_english_text_says_what_is_deleted_kept_why_and_until_when_with_the_english_clause() -> None:
    text = render_text(answer(KEPT, DELETED, HELD), "en")
    deleted, kept = text.split("What we keep:")
    assert "support_desk/correspondence/33" in deleted and "billing_db/invoice/84" not in deleted
    assert "Why: bookkeeping records are kept 5 years" in kept
    assert "Deleted by: 2028-01-01 00:00" in kept  # 31 Dec 23:00 UTC is midnight in Oslo
    assert "“Personal data regarding invoices and payment are kept at least 5 years" in kept
    assert "(seed 001, “How long do we store your personal data”)" in kept
    assert "Deleted by: not yet set" in kept  # the held record has no date while the hold lasts
    assert "Due by: 2025-05-18 06:00" in text


def test_the_norwegian_text_quotes_the_norwegian_seeds_and_keeps_the_recorded_reason_beside_ours() -> None:
    text = render_text(answer(KEPT, DELETED, HELD), "nb")
    assert text.startswith("Svar på kravet ditt om sletting")
    assert "“Personopplysninger knyttet til fakturaer og betaling beholdes i minst 5 år" in text
    assert "(seed 002, “Hvor lenge vi oppbevarer dine personopplysninger”)" in text
    assert "Hvorfor: ingen regel pålegger oss å beholde dette" in text
    assert "rettslig tilbakeholdelse (legal hold)" in text  # the hold, in Norwegian
    assert "(slik det er registrert (engelsk): legal hold h-1: deletion suspended" in text
    assert "Rettslig grunnlag: GDPR art. 6(1)(c) og 17(3)(b): rettslig forpliktelse" in text
    assert "Slettes innen: 2028-01-01 00:00" in text


def test_a_seed_in_the_other_language_is_quoted_as_it_is_with_our_translation() -> None:
    english = render_text(answer(HOSTED), "en")
    assert "“Kunde aksepterer at Leverandør sletter alle data ved opphør" in english
    assert (
        "quoted in Norwegian: the seed has no English text; our translation: “The customer accepts" in english
    )


def test_the_page_is_self_contained_in_its_language_and_escapes_every_value() -> None:
    hostile = item(HOSTILE, HOSTILE, "KEEP", HOSTILE, HOSTILE, basis=HOSTILE, until="2027-12-31T23:00:00Z")
    text = render_text(answer(item("x\x1b[2J", "client", "DELETE", "account", "gone")), "en")
    assert "\x1b" not in text and "x\\x1b[2J" in text  # no terminal escape reaches the screen
    for lang in ("nb", "en"):
        page = render_html(answer(KEPT, DELETED, hostile), lang)
        assert f'<html lang="{lang}">' in page
        assert "<script" not in page and "&lt;script&gt;" in page
        assert not re.search(r"""(src|href)\s*=|url\(|@import""", page)  # nothing fetched from anywhere
        assert "default-src 'none'" in page
    assert "Dette beholder vi" in render_html(answer(KEPT), "nb")
    assert "What we keep" in render_html(answer(KEPT), "en")


@pytest.mark.parametrize("lang", texts.LANGUAGES)
def test_every_rule_and_category_of_the_shipped_policy_has_its_words_in_both_languages(lang: str) -> None:
    policy = rules_policy()
    for rule in policy.rules:
        quote = texts.QUOTES[rule.id][lang]
        assert quote.lang == lang or quote.translation, (
            f"{rule.id}: a {quote.lang} quote needs our translation"
        )
        assert rule.id in texts.WHY_NB and rule.id in texts.BASIS_NB
        for category in rule.categories:
            assert texts.CATEGORY[category][lang]
    assert texts.RIGHT[lang].lang == lang
