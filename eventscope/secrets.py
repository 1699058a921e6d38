"""Secrets in configuration: values that never print themselves, and URLs shown without them."""
from __future__ import annotations

import re
from dataclasses import fields
from urllib.parse import urlsplit, urlunsplit


class Secret:
    """A string that never prints itself."""

    def __init__(self, value: str | None):
        self._value = value or None

    def get(self) -> str | None:
        """The secret value, for handing to a client library only."""
        return self._value

    def __bool__(self) -> bool:
        return self._value is not None

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret(None)"

    __str__ = __repr__

    def __eq__(self, other) -> bool:
        return isinstance(other, Secret) and other._value == self._value


_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|auth|cred", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``redis://user:pw@host`` → ``redis://user:***@host``; a query parameter named like a
    secret (``?password=``, ``?token=``) → ``***`` too."""
    parts = urlsplit(url)
    if parts.query:
        query = "&".join(f"{k}=***" if _SECRET_PARAM.search(k) else (f"{k}={v}" if sep else k)
                         for k, sep, v in (p.partition("=") for p in parts.query.split("&")))
        url = url.replace("?" + parts.query, "?" + query, 1)
        parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def redacted_repr(settings, url_fields: tuple) -> str:
    """A settings dataclass's ``repr`` with its URL fields (a URL or a list of them) redacted
    (its :class:`Secret` fields hide themselves)."""
    def shown(name: str) -> str:
        value = getattr(settings, name)
        if name in url_fields and value:
            value = [redact_url(str(v)) for v in value] if isinstance(value, list) else redact_url(str(value))
        return f"{name}={value!r}"
    return f"{type(settings).__name__}({', '.join(shown(f.name) for f in fields(settings))})"
