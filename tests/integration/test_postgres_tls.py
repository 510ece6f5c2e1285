"""PostgreSQL over TLS through the DSN: the local cluster (deploy/local/postgres.sh) serves TLS with
a certificate of its own CA; a sink's connection with ``sslmode=verify-full`` and that CA as its
root certificate is encrypted and verified, and one with another root certificate is refused
before anything is sent, with one line naming the setting."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import psycopg2
import pytest

from ebbtide.sinks.base.errors import SinkSetupError
from ebbtide.sinks.base.tracking import Connected

ROOT = "EBBTIDE_LOCAL_PG_SSLROOTCERT"
OTHER_CA = Path(__file__).parents[1] / "unit" / "ebbtide" / "runtime" / "test-ca.pem"


@pytest.fixture
def root_certificate() -> str:
    """The local cluster's CA certificate: a failure, not a skip, if the stack has none."""
    path = os.environ.get(ROOT)
    if not path or not Path(path).is_file():
        pytest.fail(f"{ROOT} not set or no such file: restart the stack with this deploy/local/postgres.sh")
    return path


def verified(dsn: str, root: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}sslmode=verify-full&sslrootcert={root}"


def test_a_sink_connects_with_verify_full_over_tls(database: str, root_certificate: str) -> None:
    sink = Connected(verified(database, root_certificate), threading.Event())
    try:
        with sink.conn.cursor() as cur:
            cur.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            encrypted, version = cur.fetchone() or (False, None)
        assert encrypted and version in ("TLSv1.2", "TLSv1.3")
        assert sink.conn.info.ssl_in_use
    finally:
        sink.close()


def test_a_wrong_root_certificate_is_refused_with_one_line(database: str) -> None:
    with pytest.raises(SinkSetupError) as refused:
        Connected(verified(database, str(OTHER_CA)), threading.Event())
    message = str(refused.value)
    assert message.startswith("EBBTIDE_PG_DSN: cannot connect to PostgreSQL: ")
    assert "certificate verify failed" in message and "\n" not in message
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
        psycopg2.connect(verified(database, str(OTHER_CA))).close()
