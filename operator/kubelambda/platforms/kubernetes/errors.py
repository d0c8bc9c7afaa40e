"""What a failed call to the API server raises; callers decide from it whether to retry.

ApiError            the server answered an error status, or could not be reached (status 0)
 ├── NotFound       404: the object (or its namespace) does not exist
 └── Conflict       409: a resourceVersion precondition failed, or field managers conflict
"""

from __future__ import annotations

from typing import Final

__all__ = ["ApiError", "Conflict", "NotFound"]

# Worth another try later: throttled, the server is busy or restarting, or unreachable (0).
_TRANSIENT: Final = frozenset({0, 409, 429, 500, 502, 503, 504})


class ApiError(Exception):
    """An error answer of the API server: its HTTP status, Status reason and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{status} {reason}: {message}" if status else message)

    @property
    def transient(self) -> bool:
        """True when the same call may succeed later without anything else changing."""
        return self.status in _TRANSIENT


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


def api_error(status: int, reason: str, message: str) -> ApiError:
    """The most specific ApiError subclass for this status."""
    if status == 404:
        return NotFound(status, reason, message)
    if status == 409:
        return Conflict(status, reason, message)
    return ApiError(status, reason, message)
