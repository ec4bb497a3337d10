"""The edge side: a sensor simulator writing SQLite, and the uploader feeding the ingest queue."""
