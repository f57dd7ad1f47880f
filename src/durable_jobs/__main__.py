"""``python -m durable_jobs``: what is installed; with arguments, the ``durable-jobs`` command.

With no arguments it prints the version, the store URL schemes installed and
the optional extras found (the same as ``durable-jobs --version``).
"""

import sys

from durable_jobs.cli import main
from durable_jobs.cli._about import about_text

if __name__ == "__main__":
    if len(sys.argv) > 1:
        main()
    else:
        print(about_text())
