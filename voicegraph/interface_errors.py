"""The errors a phone line's configuration raises: :class:`CallInterfaceError` and its kinds.
Each message says what to change. (``voicegraph.interface`` re-exports them.)"""

from __future__ import annotations

__all__ = [
    "CallInterfaceError",
    "IncompatibleOptionsError",
    "InvalidOptionError",
    "MissingCredentialsError",
]


class CallInterfaceError(ValueError):
    """A ``CallInterface`` was configured in a way that cannot work."""


class InvalidOptionError(CallInterfaceError):
    """One option has a value outside what it accepts."""


class IncompatibleOptionsError(CallInterfaceError):
    """Options are valid alone but do not work together (e.g. managed mode on Plivo)."""


class MissingCredentialsError(CallInterfaceError):
    """A carrier credential was neither passed nor found in the environment."""
