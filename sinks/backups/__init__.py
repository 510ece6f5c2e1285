"""The backups sink: the catalogue of immutable backups (``catalogue``) and the executor that
answers a record held in them with EXPIRES (``executor``)."""

# The store and category of hosted data in backups; here rather than in ``catalogue`` so the kind
# can be listed without the database driver.
STORE = "hosting_backups"
CATEGORY = "hosted"
