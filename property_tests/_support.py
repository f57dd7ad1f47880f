"""Helpers shared by the property tests (hypothesis).

The fixtures of the root ``conftest.py`` (store URLs, Postgres schemas) apply
here too; there is no ``conftest.py`` in this folder (mypy wants one module
named ``conftest``). Module names here must differ from those in ``tests/``:
pytest imports both folders by basename.

Profiles: ``HYPOTHESIS_PROFILE=thorough`` for long local runs; the default
profile keeps the whole ``make test`` under its 10-minute budget on 2 cores.
"""

from __future__ import annotations
