"""Deploying a job: fetching its source, building its environment, running it."""
