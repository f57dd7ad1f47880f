"""The trio runtime: clock, scheduler, runs, and ``open_jobs``."""
