"""Lifecycle: the control plane (API, store, deploy pipeline, builders, runners, auth)."""
