"""Store adapters, found by URL scheme through the ``durable_jobs.stores`` entry points.

- ``memory://`` — :class:`durable_jobs.stores.memory.MemoryStore` (one process, not durable)
- ``sqlite:///path.db`` — :class:`durable_jobs.stores.sqlite.SQLiteStore` (embedded default)
- ``postgresql://user:password@host:port/db`` — :class:`durable_jobs.stores.postgres.PostgresStore`
"""
