"""Domain exceptions. The web layer maps each kind to one HTTP status in one place."""


class DomainError(Exception):
    """Base of every refusal the domain can give."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    """The thing does not exist, or it is not the caller's to see."""


class Conflict(DomainError):
    """The request is valid but the current state does not allow it."""


class InvalidInput(DomainError):
    """The request breaks a domain rule on its values."""

    def __init__(self, message: str, errors: dict | None = None):
        super().__init__(message)
        self.errors = errors or {}


class SoldOut(Conflict):
    """No seat left of what a booking asks for, and none that could come back (POST /bookings):
    refused before anything is recorded. The answer says so to programs as REJECTED bookings do."""

    def __init__(self, message: str):
        super().__init__(message)
        self.details = {"reject_reason": "sold_out"}


class Forbidden(DomainError):
    """The caller may not do this (a booking without a valid Admission-Token, say)."""


class Unavailable(DomainError):
    """A part the request needs is down for the moment (the database behind a queue join, say): try again."""


class AlreadyExists(Conflict):
    """A unique thing (an email, say) is taken."""
