"""The lifecycle HTTP API (FastAPI), served at /lifecycle/api/v1 and /api/v1."""
