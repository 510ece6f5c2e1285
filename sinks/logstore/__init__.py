"""The log-store sink: server logs in a table partitioned by day (``partitions``), retention by
dropping a day's partition (``executor``)."""
