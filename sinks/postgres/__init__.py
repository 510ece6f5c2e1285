"""The PostgreSQL sink: table maps (``table_map``, shipped ones in ``maps/``) checked against the
database (``check``), the executor (``executor``, its SQL in ``statements``), the process
(``sink``) and the least-privilege role (``roles``)."""
