"""The policy: what the pipeline enforces, as data.

``vocabulary`` names every event kind with its roles and every receipt outcome; ``rules`` loads
and checks the retention rules (``retention.v1.toml``), ``stores`` the store map
(``stores.v1.toml``); ``calendar`` counts retention periods in the policy's local calendar.
Nothing in this package imports faust, kafka or psycopg2, reads the wall clock or does I/O at
import, so the same events under the same policy give the same decisions, byte for byte.
"""
