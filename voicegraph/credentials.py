"""A line's carrier credentials: from the arguments or the carrier's environment variables,
checked for shape, the auth token kept out of ``repr``, logs and errors."""

from __future__ import annotations

import os
import re
from typing import NamedTuple

from .interface_errors import IncompatibleOptionsError, InvalidOptionError, MissingCredentialsError
from .nodes.providers.secret import Secret

__all__ = ["CarrierCredentials", "carrier_credentials"]


class CarrierCredentials(NamedTuple):
    """The account id (Twilio account SID or Plivo auth id; not secret: it appears in carrier
    URLs) and the auth token, which only signs and checks requests."""

    account_id: str
    auth_token: Secret


def carrier_credentials(
    telephony: str, account_sid: str | None, auth_token: str | None, auth_id: str | None
) -> CarrierCredentials:
    """The credentials of a ``telephony`` line: each argument, else its environment variable
    (``TWILIO_ACCOUNT_SID`` / ``TWILIO_AUTH_TOKEN``, ``PLIVO_AUTH_ID`` / ``PLIVO_AUTH_TOKEN``).
    Raises :class:`MissingCredentialsError` for one neither passed nor set, and
    :class:`InvalidOptionError` / :class:`IncompatibleOptionsError` for one of the wrong shape
    or the other carrier's."""
    env = os.environ
    if telephony == "twilio":
        ident = account_sid or env.get("TWILIO_ACCOUNT_SID")
        token = auth_token or env.get("TWILIO_AUTH_TOKEN")
        id_arg, id_env, token_env = "account_sid", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"
        id_ok = bool(ident and re.fullmatch(r"AC[0-9a-fA-F]{32}", ident))
        id_shape = "'AC' followed by 32 hex digits"
        if auth_id:
            raise IncompatibleOptionsError(
                "auth_id is a Plivo credential; with telephony='twilio' pass account_sid="
            )
    else:
        ident = auth_id or env.get("PLIVO_AUTH_ID")
        token = auth_token or env.get("PLIVO_AUTH_TOKEN")
        id_arg, id_env, token_env = "auth_id", "PLIVO_AUTH_ID", "PLIVO_AUTH_TOKEN"
        id_ok = bool(ident and re.fullmatch(r"[A-Z0-9]{10,40}", ident))
        id_shape = "10-40 upper-case letters and digits (e.g. 'MAXXXXXXXXXXXXXXXXXX')"
        if account_sid:
            raise IncompatibleOptionsError(
                "account_sid is a Twilio credential; with telephony='plivo' pass auth_id="
            )
    if not ident:
        raise MissingCredentialsError(
            f"{telephony} needs {id_arg}=; pass it or set the {id_env} environment variable"
        )
    if not id_ok:
        # The id is not secret (it appears in carrier URLs), but echo only its length anyway.
        raise InvalidOptionError(
            f"{id_arg} does not look like a {telephony} id ({len(ident)} characters); "
            f"expected {id_shape}"
        )
    if not token:
        raise MissingCredentialsError(
            f"{telephony} needs auth_token=; pass it or set the {token_env} environment variable"
        )
    source = "argument" if auth_token else f"${token_env}"
    return CarrierCredentials(ident, Secret(token, source=source))
