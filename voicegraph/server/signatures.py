"""Carrier request signatures: compute and validate.

* Twilio ``X-Twilio-Signature``: base64 HMAC-SHA1, keyed with the auth token, over the URL
  Twilio requested followed by the sorted form parameters as ``name + value``.
* Plivo ``X-Plivo-Signature-V3``: base64 HMAC-SHA256, keyed with the auth token, over a
  canonical URL (sorted query, sorted POST parameters) followed by ``"." + nonce``.

The compute functions are public because the simulated carriers in ``voicegraph.testing`` sign
their webhooks with them. Validators compare in constant time and never raise on malformed
input: anything that is not a valid signature is simply ``False``. Tokens never appear in any
message produced here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import parse_qs, urlsplit, urlunsplit

__all__ = [
    "Params",
    "compute_plivo_v3_signature",
    "compute_twilio_signature",
    "twilio_body_sha256",
    "validate_plivo_v3_signature",
    "validate_twilio_json_signature",
    "validate_twilio_signature",
]

Params = Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]]
"""Form parameters: a mapping (a value may be a list for repeated names) or (name, value) pairs."""


def _multi(params: Params | None) -> dict[str, list[str]]:
    """Normalise parameters to name -> list of values, keeping repeats."""
    out: dict[str, list[str]] = {}
    if params is None:
        return out
    items: Iterable[tuple[str, str | Sequence[str]]]
    items = params.items() if isinstance(params, Mapping) else params
    for name, value in items:
        values = [value] if isinstance(value, str) else list(value)
        out.setdefault(name, []).extend(values)
    return out


def _b64_hmac(key: str, message: str, digest: str) -> str:
    mac = hmac.new(key.encode("utf-8"), message.encode("utf-8"), digest)
    return base64.b64encode(mac.digest()).decode("ascii")


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


# --------------------------------------------------------------------------------- Twilio


def compute_twilio_signature(url: str, params: Params | None, auth_token: str) -> str:
    """The ``X-Twilio-Signature`` Twilio would send for a request to ``url`` with ``params``.

    ``url`` is used exactly as given (scheme, host, port, path and raw query). Repeated names are
    de-duplicated and their values sorted, as Twilio's SDKs do. Pass ``None`` or ``{}`` for GET
    requests and WebSocket handshakes.
    """
    multi = _multi(params)
    tail = "".join(name + value for name in sorted(multi) for value in sorted(set(multi[name])))
    return _b64_hmac(auth_token, url + tail, "sha1")


def _twilio_url_candidates(url: str) -> list[str]:
    """The URL as given, without its port, and with the default port added.

    Twilio drops the port before signing some requests and keeps it for others, so a validator
    must accept either form.
    """
    parts = urlsplit(url)
    candidates = [url]
    host = parts.hostname or ""
    userinfo = ""
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0] + "@"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if parts.port is not None:
        candidates.append(urlunsplit(parts._replace(netloc=f"{userinfo}{host}")))
    else:
        default = 443 if parts.scheme in ("https", "wss") else 80
        candidates.append(urlunsplit(parts._replace(netloc=f"{userinfo}{host}:{default}")))
    return candidates


def validate_twilio_signature(
    url: str, params: Params | None, signature: str | None, auth_token: str
) -> bool:
    """True when ``signature`` is Twilio's signature for ``url`` and ``params``.

    Accepts the URL with or without its (default) port. For WebSocket handshakes pass the
    ``wss://`` URL and no params; a trailing-slash variant is also tried, per Twilio's advice.
    """
    if not signature or not auth_token:
        return False
    urls = _twilio_url_candidates(url)
    if urlsplit(url).scheme in ("ws", "wss"):
        path_url = url.split("?", 1)
        if not path_url[0].endswith("/"):
            slashed = path_url[0] + "/" + ("?" + path_url[1] if len(path_url) > 1 else "")
            urls.extend(_twilio_url_candidates(slashed))
    ok = False
    for candidate in urls:
        # Evaluate every candidate so timing does not reveal which form matched.
        ok |= _same(compute_twilio_signature(candidate, params, auth_token), signature)
    return ok


def twilio_body_sha256(body: bytes) -> str:
    """Lowercase hex SHA-256 of a JSON webhook body (Twilio's ``bodySHA256`` query parameter)."""
    return hashlib.sha256(body).hexdigest()


def validate_twilio_json_signature(
    url: str, body: bytes, signature: str | None, auth_token: str
) -> bool:
    """Validate a JSON-bodied Twilio webhook: ``bodySHA256`` in ``url`` must match ``body`` and
    the signature is over the full URL with no parameters appended."""
    query = parse_qs(urlsplit(url).query, keep_blank_values=True)
    claimed = query.get("bodySHA256", [""])[0]
    if not claimed or not _same(twilio_body_sha256(body), claimed):
        return False
    return validate_twilio_signature(url, None, signature, auth_token)


# --------------------------------------------------------------------------------- Plivo


def _sorted_query(multi: Mapping[str, list[str]]) -> str:
    return "&".join(f"{k}={v}" for k in sorted(multi) for v in sorted(multi[k]))


def _plivo_canonical(method: str, url: str, params: Params | None) -> str:
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    query = parse_qs(parts.query, keep_blank_values=True)
    body = _multi(params)
    if method.upper() == "GET":
        merged = dict(body)
        merged.update(query)  # the URL's own query wins, as in Plivo's Python SDK
        qs = _sorted_query(merged)
        return base + ("?" + qs if qs else "")
    qs = _sorted_query(query)
    if not body:
        return base + ("?" + qs if qs else "")
    # The lone "?" before the parameters is part of Plivo's construction even without a query.
    tail = "".join(k + v for k in sorted(body) for v in sorted(body[k]))
    return base + "?" + qs + ("." if qs else "") + tail


def compute_plivo_v3_signature(
    method: str, url: str, params: Params | None, nonce: str, auth_token: str
) -> str:
    """The ``X-Plivo-Signature-V3`` Plivo would send for this request and nonce.

    ``method`` is ``"GET"`` or ``"POST"``; ``url`` is the URL as configured in Plivo. For a
    WebSocket upgrade use ``"GET"``, the ``wss://`` URL and no params.
    """
    message = _plivo_canonical(method, url, params) + "." + nonce
    return _b64_hmac(auth_token, message, "sha256")


def validate_plivo_v3_signature(
    method: str,
    url: str,
    params: Params | None,
    nonce: str | None,
    signature_header: str | None,
    auth_token: str,
) -> bool:
    """True when any comma-separated entry of ``signature_header`` matches.

    No V2 fallback: a failing V3 header is a failure (falling back would allow a downgrade).
    """
    if not signature_header or not nonce or not auth_token:
        return False
    expected = compute_plivo_v3_signature(method, url, params, nonce, auth_token)
    ok = False
    for entry in signature_header.split(","):
        ok |= _same(expected, entry.strip())
    return ok
