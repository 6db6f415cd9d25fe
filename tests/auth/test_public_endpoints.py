"""Public endpoint requests: recorded per job version, decided by an admin, audited."""

from __future__ import annotations

from lifecycle.auth.public_endpoints import (
    decide_public_endpoint,
    is_public_endpoint,
    list_public_endpoint_requests,
    request_public_endpoints,
)
from lifecycle.store import Database
from lifecycle.store.audit import list_events
from lifecycle.store.models import PublicEndpointStatus


def test_requests_are_decided_per_version(database: Database) -> None:
    with database.session() as session:
        created = request_public_endpoints(session, "adder", "1.0.0", ["api/v1/perform/", "/docs", "/docs"])
        assert [r.endpoint for r in created] == ["/api/v1/perform", "/docs"]
        assert (
            request_public_endpoints(session, "adder", "1.0.0", ["/docs", "/metrics"])[0].endpoint
            == "/metrics"
        )
        request_public_endpoints(session, "adder", "2.0.0", ["/api/v1/perform"])
    with database.session() as session:
        pending = list_public_endpoint_requests(session, PublicEndpointStatus.PENDING, "adder", "1.0.0")
        assert [r.endpoint for r in pending] == ["/api/v1/perform", "/docs", "/metrics"]
        decide_public_endpoint(session, pending[0].id, True, actor="User admin")
        decide_public_endpoint(session, pending[1].id, False, actor="User admin")
    with database.session() as session:
        assert is_public_endpoint(session, "adder", "1.0.0", "/api/v1/perform")
        assert is_public_endpoint(session, "adder", "1.0.0", "/api/v1/perform/x")
        assert not is_public_endpoint(session, "adder", "1.0.0", "/api/v1/performance")
        assert not is_public_endpoint(session, "adder", "1.0.0", "/docs")
        assert not is_public_endpoint(session, "adder", "2.0.0", "/api/v1/perform")
        approved = list_public_endpoint_requests(session, PublicEndpointStatus.APPROVED)
        assert [(r.endpoint, r.decided_by) for r in approved] == [("/api/v1/perform", "User admin")]
        assert approved[0].decided_at is not None
        events = list_events(session)
        assert [(e.action, e.target) for e in events] == [
            ("public_endpoint.reject", "endpoint /docs of job adder 1.0.0"),
            ("public_endpoint.approve", "endpoint /api/v1/perform of job adder 1.0.0"),
        ]
