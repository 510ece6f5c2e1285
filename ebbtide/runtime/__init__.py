"""The bottom layer: settings, metrics, the Kafka client factory, keys, message signatures, logging.

The only part of ``ebbtide`` that ``streams`` and ``sinks`` import; it imports nothing of
``streams``, ``sinks`` or the rest of ``ebbtide``.
"""
