from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kubernetes.apiserver_standin import ApiServerStandIn


@pytest.fixture
def standin() -> Iterator[ApiServerStandIn]:
    """A fresh stand-in Kubernetes API server for one test."""
    with ApiServerStandIn() as api:
        yield api
