"""Standard Webhooks signatures: `webhook-id`, `webhook-timestamp`, and
`webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.

`sign` is what the sender uses; `verify` is what a receiver uses (tests, and anyone who wants a
reference): constant-time comparison, timestamps older or newer than the tolerance refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


class SignatureError(ValueError):
    pass


def secret_key(secret: str) -> bytes:
    """`whsec_<base64>` secrets are base64 keys (the standard's form); anything else is used as text."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_") :])
    return secret.encode()


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": signature(secret, msg_id, int(timestamp), body),
    }


def verify(secret: str, headers, body: bytes, now: float, tolerance: float = 300.0) -> str:
    """Check the headers of a delivery; returns the webhook-id. Raises SignatureError."""
    get = headers.get
    msg_id, ts, sigs = get("webhook-id"), get("webhook-timestamp"), get("webhook-signature")
    if not msg_id or not ts or not sigs:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        t = int(ts)
    except ValueError:
        raise SignatureError("webhook-timestamp is not an integer") from None
    if abs(now - t) > tolerance:
        raise SignatureError(f"webhook-timestamp {t} outside the tolerance of {tolerance:g}s")
    expected = signature(secret, msg_id, t, body).encode()
    # the header may carry several space-separated signatures (key rotation)
    for candidate in sigs.split():
        if hmac.compare_digest(candidate.encode(), expected):
            return msg_id
    raise SignatureError("no matching signature")
