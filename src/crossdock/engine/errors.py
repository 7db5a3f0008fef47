"""What a job can raise, and what the worker does with it.

The worker maps these to a job's fate: PermanentError and ConfigurationError send the job to dead at once
(retrying cannot fix a wrong payload or a revoked token), RetryableError schedules another attempt no sooner
than its retry_after. `message` is what a user reads on the order's timeline, so it must say what happened in
words a merchant understands, carry the remote's own words where there are some, and never hold a secret.
"""

from __future__ import annotations


class JobError(Exception):
    """Base of every error a job raises on purpose; `message` is shown to users as is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class PermanentError(JobError):
    """The remote refused the request for a reason retrying cannot fix (400/404/422): dead at once."""


class ConfigurationError(JobError):
    """Credentials or settings are wrong (401/403 after one token refresh): dead at once, and the connection
    needs re-authorisation before anything else can succeed."""


class RetryableError(JobError):
    """A passing fault (408, 5xx, timeout, malformed body): try again later, not before retry_after seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(RetryableError):
    """The remote said 429; retry_after comes from its Retry-After header when it sent one."""
