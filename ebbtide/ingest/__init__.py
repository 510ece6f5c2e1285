"""``ebbtide ingest``: lifecycle events over HTTP, for services not written in Python.

``POST /v1/events`` takes one event or a batch in the JSON form ``ebbtide publish`` reads
(:mod:`ebbtide.tools.client`), validates every event with the client's own checks (the schema,
the policy, the size of one Kafka message), seals personal values like the client, and answers
only once Kafka has acknowledged every event of the request (acks=all).

- :mod:`.auth`: bearer tokens (a file of ``PRODUCER TOKEN`` lines) and TLS client certificates;
- :mod:`.batch`: a request body to Avro records, or the problems naming index and field;
- :mod:`.publishing`: sealing, sending, waiting for Kafka, and the memory of published event ids;
- :mod:`.app`: the FastAPI application (its OpenAPI document is generated from it);
- :mod:`.openapi`: the request body's JSON schema, from the lifecycle event's Avro schema;
- :mod:`.server`: uvicorn, with TLS and the client certificate's name passed to the application.
"""
