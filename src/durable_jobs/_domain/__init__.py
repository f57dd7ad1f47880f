"""Pure, synchronous domain: job-instance aggregates, their events and policies."""
