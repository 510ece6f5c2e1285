"""The HTTP vendor sinks: the vendors config (``vendors``), one call (``transport``), the retry
policy and circuit breaker (``breaker``), the executor (``executor``) and the process (``sink``)."""
