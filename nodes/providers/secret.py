"""Credentials that never show up in logs, errors or reprs."""

from __future__ import annotations

import os
from typing import NoReturn

__all__ = ["MissingSecret", "Secret"]


class MissingSecret(ValueError):
    """No secret was given as an argument and its environment variable is unset."""


class Secret:
    """A credential whose ``repr``/``str`` never show its value.

    Use :meth:`reveal` only where the value goes on the wire (a header)."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = "argument") -> None:
        if not isinstance(value, str) or not value:
            raise MissingSecret(f"a secret must be a non-empty string (from {source})")
        self._value = value
        self.source = source

    @classmethod
    def load(cls, value: str | Secret | None, env: str, provider: str) -> Secret:
        """``value`` if given, else the environment variable ``env``.

        Raises :class:`MissingSecret` naming ``env`` when neither is set."""
        if isinstance(value, Secret):
            return value
        if value:
            return cls(value)
        found = os.environ.get(env, "")
        if not found:
            raise MissingSecret(
                f"{provider}: no API key; pass api_key=... or set the environment variable {env}"
            )
        return cls(found, source=f"${env}")

    def reveal(self) -> str:
        """The secret value (for the request that needs it; never log it)."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<redacted from {self.source}>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("Secret values are not picklable")
