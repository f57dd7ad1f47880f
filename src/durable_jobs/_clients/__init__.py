"""The per-kind clients (one module per kind) and the result types of their calls;
``durable_jobs._client`` builds them for :class:`~durable_jobs.Jobs`."""
