"""Deletion sinks: the generic command loop (``base/``), one package per kind of store
(``postgres/``, ``http/``, ``logstore/``, ``backups/``) and the registry of kinds (``registry``)."""
