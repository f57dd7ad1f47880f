"""Read-only and maintenance tools that work on a store without a running runtime:
the :class:`~durable_jobs.Inspector` and the operations of :mod:`durable_jobs.maintenance`.

Nothing here imports the runtime or the client; the command line and the
dashboard are built on these tools.
"""
