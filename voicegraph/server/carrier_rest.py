"""The carrier REST client for a line: one place that knows how a :class:`CallInterface` names
its carrier's API (account, token, base URL), for placing, ending and transferring calls."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..interface import CallInterface
    from ..transports.plivo.rest import PlivoREST
    from ..transports.twilio.rest import TwilioREST

__all__ = ["carrier_rest", "twilio_rest", "plivo_rest"]

TWILIO_API = "https://api.twilio.com"
PLIVO_API = "https://api.plivo.com"


def twilio_rest(iface: CallInterface) -> TwilioREST:
    """Twilio's REST client for ``iface`` (``api_base_url`` overrides the public API)."""
    from ..transports.twilio.rest import TwilioREST

    return TwilioREST(iface.account_id, iface.auth_token, base_url=iface.api_base_url or TWILIO_API)


def plivo_rest(iface: CallInterface) -> PlivoREST:
    """Plivo's REST client for ``iface`` (``api_base_url`` overrides the public API)."""
    from ..transports.plivo.rest import PlivoREST

    return PlivoREST(iface.account_id, iface.auth_token, base_url=iface.api_base_url or PLIVO_API)


def carrier_rest(iface: CallInterface) -> TwilioREST | PlivoREST:
    """The REST client of ``iface``'s carrier (both end a call with ``hangup(call_id)``)."""
    return twilio_rest(iface) if iface.telephony == "twilio" else plivo_rest(iface)
