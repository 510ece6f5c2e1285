"""Change data capture: a service's tables announce their records without application code.

Debezium's PostgreSQL connector (on Kafka Connect, ``deploy/local/connect.sh``) reads the tables
of the store maps that name a ``subject_column`` through logical replication and writes their
changes to one topic, ``<prefix>.cdc``. ``ebbtide cdc run`` (:mod:`.translator`) turns them into
lifecycle events:

- an insert (and each row of Debezium's initial snapshot) becomes a ``RecordWritten``, built as
  ``ebbtide backfill`` builds one (:mod:`.changes`); a row inserted again after Ebbtide deleted
  it (a restored backup) is flagged and announced with the event time it was first announced
  with, and the pipeline deletes it again: the engine takes a new announcement of a deleted copy
  as a new record, due at once since its deadline passed;
- a delete is checked against the ledger of Ebbtide's deletions (:mod:`.ledger`): a row deleted
  outside Ebbtide is reported (a metric and a log line naming the table, never a value).

``ebbtide cdc connect`` (:mod:`.connector`) makes the publication and registers the connector.
"""
