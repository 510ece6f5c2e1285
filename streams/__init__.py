"""Ebbtide's stream processing.

- ``streams.policy``: the vocabulary (event kinds and their roles, receipt outcomes), the
  retention rules and the store map, loaded from their versioned TOML files; pure.
- ``streams.engine``: the pure state machine: events, ticks and receipts folded into a subject's
  state, decisions, deletion commands, erasure answers and certificate content.
- ``streams.certificates``: the deletion certificate document (content, signature, reading).
- ``streams.worker``: the Faust shell: wiring, the batch step, routing and the dead-letter queue,
  staging and the subject cache, partition progress and the due index, Avro translation.
"""
