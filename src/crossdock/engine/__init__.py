"""The durable engine: inbox, jobs and workers, sync runs and cursors, timeline, remote calls."""
