"""Pub: the gateway in front of every job (auth check, version resolution, proxy, async calls)."""
