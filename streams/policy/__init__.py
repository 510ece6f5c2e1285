"""The pure policy core: events in, decisions and deletion commands out.

Nothing in this package imports faust, kafka or psycopg2, reads the wall clock or does I/O,
so the same events under the same policy give the same decisions, byte for byte.
"""
