"""What Loki's answer to a push means: about the data, about Loki's health, or about our config.

Only answers about the data itself may drop data (400, and 413 down to a single entry). An
answer that says the configuration is wrong (a bad path, bad credentials, a redirect) is retried
without end, like an outage, and turns /ready to failing with a reason an operator can act on.
"""

from __future__ import annotations

import enum
import http
import re
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit, urlunsplit

PUSH_PATH = "/loki/api/v1/push"
MAX_REDIRECTS = 5  # 307/308 hops followed per push, all on loki.url's own scheme, host and port


class Kind(enum.Enum):
    DELIVERED = "delivered"  # 2xx: every entry stored
    REJECTED = "rejected"  # 400: Loki's validation refused some or all entries, for good
    TOO_LARGE = "too_large"  # 413: split the batch and send the halves
    RETRY = "retry"  # 429, 5xx: Loki is busy or unwell; the request was fine
    REDIRECT = "redirect"  # 307/308: the same request again, at the Location
    MISCONFIGURED = "misconfigured"  # anything else: our configuration is wrong, not the data


class Outcome(enum.Enum):
    DELIVERED = "delivered"  # acknowledged: every entry stored
    REJECTED = "rejected"  # refused for good (PushResult.dropped of them; a 400 may store the
    # rest, so may the other halves of a batch split after a 413): settled, counted, logged


@dataclass(frozen=True, slots=True)
class PushResult:
    outcome: Outcome
    status: int | None  # of the answer that settled the batch (413: it was split)
    attempts: int  # requests, over all parts of a split batch
    dropped: int  # entries Loki refused
    reason: str = ""


def classify(status: int) -> Kind:
    if 200 <= status < 300:
        return Kind.DELIVERED
    if status == 400:
        return Kind.REJECTED
    if status == 413:
        return Kind.TOO_LARGE
    if status == 429 or status >= 500:
        return Kind.RETRY
    if status in (307, 308):
        return Kind.REDIRECT
    return Kind.MISCONFIGURED


_CREDENTIALS = "the credentials (loki.bearer_token_file, loki.basic_auth) and loki.tenant_id"
_ADVICE = {
    401: f"check {_CREDENTIALS}",
    403: f"check {_CREDENTIALS}",
    404: f"check loki.url: Loki's push path is {PUSH_PATH}",
    405: f"check loki.url: Loki's push path is {PUSH_PATH}, which takes POST",
    407: "check the proxy's credentials (user:password@ in loki.proxy_url, HTTPS_PROXY or "
         "HTTP_PROXY)",
}


def misconfiguration(status: int, location: str | None = None, *, foreign: bool = False) -> str:
    """Why an answer means the configuration is wrong, and what to check: /ready's reason.

    `location`: a redirect's target, resolved (None: the answer had none); `foreign`: it is on
    another scheme, host or port than the URL that was asked."""
    said = f"push answered HTTP {status} {_phrase(status)}".rstrip()
    if status in (301, 302, 303) and location:
        return f"{said}: loki.url redirects to {shown(location)}; set loki.url to it"
    if status in (307, 308):
        if not location:
            return f"{said} without a Location: check loki.url"
        if foreign:
            return (f"{said}: loki.url redirects to {shown(location)}, another host: not "
                    f"followed, as credentials are not sent to another host; set loki.url to "
                    f"it if it is right")
        return (f"{said}: loki.url redirects more than {MAX_REDIRECTS} times, last to "
                f"{shown(location)}; set loki.url to the final address")
    advice = _ADVICE.get(status, "check loki.url, the credentials and any proxy on the way")
    return f"{said}: {advice}"


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def shown(url: str) -> str:
    """A URL from an answer, fit for /ready and logs: no userinfo, printable, at most 200 chars."""
    parts = urlsplit(url)
    if "@" in parts.netloc:  # never echo credentials, whoever put them there
        parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
    text = urlunsplit(parts)
    return "".join(c if c.isprintable() else "?" for c in text)[:200]


# Loki's reasons (pkg/validation), found in its message; the first match wins.
_REASONS = (
    ("line_too_long", ("line_too_long", "max entry size", "line too long")),
    ("too_old", ("greater_than_max_sample_age", "too old", "too far behind", "out of order")),
    ("too_far_in_future", ("too_far_in_future", "too new", "too far in the future")),
    ("rate_limited", ("rate_limited", "rate limit")),
    ("stream_limit", ("stream_limit", "stream limit")),
)
# The ingester's partial rejection, once per stream: "... total ignored: N out of M ...";
# newer distributors say "N errors like: ..." per kind of validation error.
_IGNORED = re.compile(r"total ignored: (\d+) out of \d+|(\d+) errors like:")


def rejection_reason(message: str) -> str:
    text = message.lower()
    for reason, needles in _REASONS:
        if any(needle in text for needle in needles):
            return reason
    return "bad_request"


def rejected_count(message: str, entries: int) -> int:
    """How many entries Loki refused: what its message counts, else the whole batch."""
    counted = [int(a or b) for a, b in _IGNORED.findall(message)]
    return min(sum(counted), entries) if counted else entries


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Retry-After as delay-seconds or an HTTP-date (`now`: wall-clock epoch seconds)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # isdigit() alone takes "²", which float() refuses
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, OverflowError):
        return None


__all__ = ["MAX_REDIRECTS", "PUSH_PATH", "Kind", "classify", "misconfiguration",
           "rejected_count", "rejection_reason", "retry_after_seconds", "shown"]
