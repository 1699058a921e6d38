"""Secrets in configuration: values that never print themselves, and URLs shown without them."""
from __future__ import annotations

import re
from dataclasses import fields
from urllib.parse import urlsplit, urlunsplit


class Secret:
    """A string that never prints itself.

    :meth:`from_file` keeps a path instead (a Kubernetes secret mount): the file is read
    again on each :meth:`get`, so a client built after a rotation gets the new secret."""

    def __init__(self, value: str | None):
        self._value = value or None
        self._path: str | None = None

    @classmethod
    def from_file(cls, path: str) -> "Secret":
        """The secret held in ``path`` (one trailing newline dropped); ``OSError`` if it
        cannot be read now."""
        secret = cls(None)
        secret._path = path
        secret._value = secret._read()
        return secret

    def _read(self) -> str | None:
        with open(self._path, encoding="utf-8") as fh:
            text = fh.read()
        return text.removesuffix("\n").removesuffix("\r") or None

    def get(self) -> str | None:
        """The secret value, for handing to a client library only."""
        if self._path is not None:
            try:
                self._value = self._read()
            except OSError:
                pass  # unreadable for a moment (a mount being swapped): the last value read
        return self._value

    def __bool__(self) -> bool:
        return self._value is not None

    def __repr__(self) -> str:
        if self._path is not None:
            return f"Secret(file={self._path!r})"
        return "Secret('***')" if self._value else "Secret(None)"

    __str__ = __repr__

    def __eq__(self, other) -> bool:
        return isinstance(other, Secret) and (other._path, other._value) == (self._path, self._value)


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
