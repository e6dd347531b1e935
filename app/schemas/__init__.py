"""Request and response models of the HTTP API, apart from the tables in ``app.db.models``."""
