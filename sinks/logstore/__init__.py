"""The log-store sink: server logs in a table partitioned by day (``partitions``), retention by
dropping a day's partition (``executor``)."""

# The store and category of every log-day record (the shipper announces each day under them);
# here rather than in ``partitions`` so the kind can be listed without the database driver.
STORE = "log_store"
CATEGORY = "auto_collected"
