"""What an application declares: job definitions, the registry, type codecs and the
``ctx`` objects its handlers receive.

It sits above the pure domain and below the runtime: the runtime reads the
definitions and hands the contexts to the handlers; nothing here does I/O.
"""
