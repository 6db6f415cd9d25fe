"""Dashboard: the web UI, a client of the lifecycle API."""
