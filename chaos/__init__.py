"""``make chaos``: the pipeline under faults and hostile input, judged by an independent ledger.

The run loads the demo's synthetic ISP customer base into its own PostgreSQL and vendor
stand-in, then publishes its lifecycle events and ticks an accelerated clock through its own
Kafka broker, while a scheduler kills (SIGKILL) the worker, each sink, the broker and
PostgreSQL, adds and removes a second worker, takes vendors down, and sends poison pills and
forged commands, receipts, ticks and legal holds. :mod:`chaos.ledger` then says what was lost,
deleted early, deleted twice, certified but still held, missing from the dead letters, or
accepted though forged. See ``python -m chaos --help``.
"""
