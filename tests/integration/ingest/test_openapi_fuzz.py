"""The service's OpenAPI document, fuzzed by schemathesis against the real process on the real
Kafka: no 500, every answer (status, content type, body, headers) as the document says; requests
without the token are refused. A small number of examples per operation keeps it within CI's time."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from ebbtide.ingest.server import openapi_document
from ebbtide.runtime.settings import Settings
from tests.ingest_service import TOKEN, IngestService

EXAMPLES = 30  # per operation and phase; the whole test takes about 10 s
# The document of the service the `ingest` fixture runs (test_the_document_is_the_one_served)
DOCUMENT = openapi_document(Settings(ingest_max_events=20, ingest_max_body_bytes=200_000))

# Data the document refuses is refused with one of its own codes (413: a batch over the limit).
# Data it allows may still be refused 422 for what a JSON schema cannot say (ebbtide/ingest/openapi.py):
# the store map (which store holds which category and ref), a legal hold without the service's
# signing key; or 409, an event id the fuzzer used before with other content. A legal hold event,
# valid or not, is 403: the test's producer is not in EBBTIDE_INGEST_HOLD_PRODUCERS.
REFUSED = ["400", "401", "403", "409", "413", "422"]
CONFIG = SchemathesisConfig.from_dict(
    {
        "phases": {"coverage": {"enabled": False}},  # its boundary cases of 25 event types take minutes
        "checks": {
            "negative_data_rejection": {"expected-statuses": REFUSED},
            "positive_data_acceptance": {"expected-statuses": ["200", "403", "409", "422"]},
        },
    }
)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


def test_the_document_is_the_one_served(ingest: IngestService) -> None:
    assert ingest.get("/openapi.json").body == DOCUMENT


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_is_as_the_openapi_document_says(case: schemathesis.Case, ingest: IngestService) -> None:
    case.call_and_validate(base_url=ingest.url, headers={"Authorization": f"Bearer {TOKEN}"})
