"""What every sink shares: the command loop (``loop``), the executor protocol (``executor``), the
receipts (``receipts``), the PostgreSQL tracking table and connection (``tracking``), the
per-command tracked executor (``tracked``), the kind record of the registry (``kind``) and the
setup errors (``errors``)."""
