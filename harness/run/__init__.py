"""One run end to end: orchestration, live metrics, progress, resources, generator self-check, worker processes."""
