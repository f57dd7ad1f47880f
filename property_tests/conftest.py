"""Property tests (hypothesis): the fixtures of the root ``conftest.py`` apply here too.

Profiles: ``HYPOTHESIS_PROFILE=thorough`` for long local runs; the default
profile keeps the whole ``make test`` under its 10-minute budget on 2 cores.
"""
