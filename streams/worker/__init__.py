"""The worker: the thin Faust shell around the engine.

- ``app``: the Faust wiring (the lifecycle agent, the state table, rebalance signals, the
  subject page);
- ``batch``: the batch step (process, send and await the broker's acks, then flush the state);
- ``processor``: one message at a time: decode, check, call the engine, stage, say what to send;
- ``checks``, ``routing``: what a message must be, where it goes, and the dead-letter queue;
- ``staging``: the state table's keys, staged writes and the decoded-subject cache;
- ``partitions``, ``progress``: per-partition progress, due index, counts and gauges;
- ``outputs``, ``issuing``, ``certify``: commands, decisions and answers encoded; certificates
  signed and published (or held); the worker's signer;
- ``translate``: decoded Avro records to engine events and back.
"""
