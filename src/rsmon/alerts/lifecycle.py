"""Status lifecycle of an alert: new -> under_review -> confirmed | dismissed.

Interpreters of the supervision platform move an alert along this graph (``PATCH`` with a key of
write scope). A decision can be reopened (confirmed/dismissed -> under_review) because field checks
overturn desk decisions; dismissing and reopening need a reason, so the audit log says why.
"""

from __future__ import annotations

from enum import Enum

from rsmon.alerts.errors import ConflictError
from rsmon.errors import InputError


class Status(str, Enum):
    new = "new"
    under_review = "under_review"
    confirmed = "confirmed"
    dismissed = "dismissed"


#: Allowed transitions: current status -> statuses it may move to.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.new: frozenset({Status.under_review}),
    Status.under_review: frozenset({Status.confirmed, Status.dismissed}),
    Status.confirmed: frozenset({Status.under_review}),
    Status.dismissed: frozenset({Status.under_review}),
}


def parse_status(text: str, where: str = "status") -> Status:
    """The :class:`Status` named ``text``.

    Raises
    ------
    InputError
        ``text`` is not one of new, under_review, confirmed, dismissed.
    """
    try:
        return Status(text)
    except ValueError:
        raise InputError(f"{where}: expected one of {', '.join(s.value for s in Status)}, got {text!r}") from None


def reason_required(old: Status, new: Status) -> bool:
    """True where the audit log must say why: dismissing, and reopening a decision."""
    return new is Status.dismissed or old in (Status.confirmed, Status.dismissed)


def check_transition(alert_id: str, old: Status, new: Status, reason: str | None) -> None:
    """Raise unless ``old -> new`` is allowed (with a reason where one is required).

    Raises
    ------
    ConflictError
        The transition is not in :data:`TRANSITIONS` (same status included).
    InputError
        The transition needs a reason and none was given.
    """
    if new not in TRANSITIONS[old]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[old]))
        raise ConflictError(f"alert {alert_id}: cannot change status from {old.value} to {new.value} "
                            f"(allowed from {old.value}: {allowed})")
    if reason_required(old, new) and not (reason and reason.strip()):
        raise InputError(f"alert {alert_id}: a reason is required to change status from {old.value} to {new.value}")
