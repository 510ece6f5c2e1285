"""The backups sink: the catalogue of immutable backups (``catalogue``) and the executor that
answers a record held in them with EXPIRES (``executor``)."""
