"""Auth: subjects (users, ESCs, job families), tokens, passwords, permissions and call decisions."""

from lifecycle.auth.admin import ensure_admin
from lifecycle.auth.call_authorizer import CallAuthorizer, CallDecision
from lifecycle.auth.permissions import check, check_in, grant, grant_family_owner, revoke_permission
from lifecycle.auth.subjects import Subject
from lifecycle.auth.tokens import IssuedToken, authenticate, authenticate_in, issue_token, revoke_token
from lifecycle.store.models import Scope, SubjectType

__all__ = [
    "CallAuthorizer",
    "CallDecision",
    "IssuedToken",
    "Scope",
    "Subject",
    "SubjectType",
    "authenticate",
    "authenticate_in",
    "check",
    "check_in",
    "ensure_admin",
    "grant",
    "grant_family_owner",
    "issue_token",
    "revoke_permission",
    "revoke_token",
]
