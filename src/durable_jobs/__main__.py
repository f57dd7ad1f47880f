"""``python -m durable_jobs``: the same as the ``durable-jobs`` command."""

from durable_jobs.cli import main

if __name__ == "__main__":
    main()
