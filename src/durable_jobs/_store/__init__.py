"""Store layer: the eventsourcing application, mapper, alarm index and URL handling."""
