"""How the explorer writes values: amounts, addresses, hashes, times, links.

These are the templates' filters. They return plain strings; the templates' autoescaping
escapes them, so nothing here has to be HTML-safe.
"""

from __future__ import annotations

import time
from decimal import Decimal
from urllib.parse import urlsplit

#: Wei per ether.
ETHER = Decimal(10**18)

#: Schemes a URI from the chain may be a link for; anything else (javascript:, data:,
#: ipfs:, model:...) is shown as text only.
LINK_SCHEMES = frozenset({"http", "https"})

#: What ``model://<name>`` metadata URIs start with (the repository's own models).
MODEL_URI_PREFIX = "model://"


def short(value: str | None, keep: int = 6) -> str:
    """``0x1234…abcd`` for a long hex string (the whole value goes in a ``title``)."""
    if not value:
        return "—"
    if len(value) <= 2 + 2 * keep:
        return value
    return f"{value[: 2 + keep]}…{value[-keep + 2 :]}"


def ether(amount: str | int | None) -> str:
    """A wei amount as ether, exact (no float rounding), trailing zeros dropped."""
    if amount is None or amount == "":
        return "—"
    value = Decimal(int(amount)) / ETHER
    text = format(value.normalize(), "f")
    return f"{text} ETH"


def utc(timestamp: int | float | None) -> str:
    """Unix seconds as ``YYYY-MM-DD HH:MM:SS UTC``."""
    if timestamp is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def seconds(value: float | None) -> str:
    """A duration: ``3 s``, ``1.5 s``, ``2 min 5 s``; ``—`` when unknown."""
    if value is None:
        return "—"
    if value < 10 and value != int(value):
        return f"{value:.1f} s"
    if value < 120:
        return f"{value:.0f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes} min {rest} s"


def integer(value: int | None) -> str:
    """A count with thousands separators; ``—`` when unknown."""
    return "—" if value is None else f"{value:,}"


def link_href(uri: str | None) -> str | None:
    """``uri`` when it is an http(s) URL a browser may follow, else None."""
    if not uri:
        return None
    try:
        parts = urlsplit(uri.strip())
    except ValueError:
        return None
    if parts.scheme.lower() in LINK_SCHEMES and parts.netloc:
        return uri.strip()
    return None


def model_label(metadata_uri: str | None, model_id: str) -> str:
    """A model's display name: ``<name>`` from ``model://<name>``, else its short id."""
    if metadata_uri and metadata_uri.startswith(MODEL_URI_PREFIX):
        name = metadata_uri[len(MODEL_URI_PREFIX) :].strip()
        if name and len(name) <= 64 and name.isprintable():
            return name
    return short(model_id)


FILTERS = {
    "short": short,
    "ether": ether,
    "utc": utc,
    "seconds": seconds,
    "integer": integer,
    "link_href": link_href,
}
