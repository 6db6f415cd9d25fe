"""Subjects: who a token speaks for (a user, an ESC or a job family)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from lifecycle.store.models import Esc, JobFamily, SubjectType, User

_TITLES = {SubjectType.USER: "User", SubjectType.ESC: "ESC", SubjectType.FAMILY: "Job family"}


@dataclass(frozen=True)
class Subject:
    type: SubjectType
    id: int
    name: str
    is_admin: bool = False
    # set when the subject came from a token: which one, and until when it is valid
    token_id: int | None = field(default=None, compare=False)
    token_expires_at: datetime | None = field(default=None, compare=False)

    @property
    def description(self) -> str:
        """`User alice`, `ESC billing`, `Job family adder`: for X-Caller-Name, messages and the audit log."""
        return f"{_TITLES[self.type]} {self.name}"

    def __str__(self) -> str:
        return self.description


def user_subject(user: User) -> Subject:
    return Subject(SubjectType.USER, user.id, user.username, is_admin=user.is_admin)


def esc_subject(esc: Esc) -> Subject:
    return Subject(SubjectType.ESC, esc.id, esc.name)


def family_subject(family: JobFamily) -> Subject:
    return Subject(SubjectType.FAMILY, family.id, family.name)


def load_subject(session: Session, subject_type: SubjectType, subject_id: int) -> Subject | None:
    """The subject, or None when it does not exist (or is a deactivated user)."""
    if subject_type is SubjectType.USER:
        user = session.get(User, subject_id)
        return user_subject(user) if user is not None and user.is_active else None
    if subject_type is SubjectType.ESC:
        esc = session.get(Esc, subject_id)
        return esc_subject(esc) if esc is not None else None
    family = session.get(JobFamily, subject_id)
    return family_subject(family) if family is not None else None


def subject_label(session: Session, subject_type: SubjectType, subject_id: int) -> str:
    """The description of a subject even when it is deactivated or gone (then by its id)."""
    name: str | None
    if subject_type is SubjectType.USER:
        user = session.get(User, subject_id)
        name = user.username if user else None
    elif subject_type is SubjectType.ESC:
        esc = session.get(Esc, subject_id)
        name = esc.name if esc else None
    else:
        family = session.get(JobFamily, subject_id)
        name = family.name if family else None
    return f"{_TITLES[subject_type]} {name}" if name else f"{_TITLES[subject_type]} #{subject_id}"
