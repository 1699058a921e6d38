"""Masking of payloads and headers before anything is stored or shown.

Values under keys that name personal data (email, phone, name, address, card, ...,
plus the names listed in ``mask.fields``) are replaced, and in free text e-mail
addresses, card-like digit runs and phone numbers are masked. Binary values are
shown as a short hex prefix, never decoded into markup. ``mask.enabled = false``
stores payloads as they are (for systems that carry no personal data).
"""
from __future__ import annotations

import functools
import itertools
import json
import re

import orjson

PII_KEY = re.compile(r"e-?mail|phone|mobile|(^|_)name$|first_?name|last_?name|full_?name|address|street"
                     r"|card|iban|ssn|passport|birth|password|secret|token", re.I)
# starts only where a run begins and never backtracks into it: linear on a 1 MB "xxxx…"
EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]++@[\w-]++(?:\.[\w-]++)+")
CARD = re.compile(r"\b(?:\d[ -]?){12,19}\b")
# +49 151 2345678, (555) 123-4567, 555-123-4567, +4915123456789: 7–15 digits in groups;
# not dates, times, IPs or decimals (no dots, colons or slashes inside or around)
PHONE = re.compile(r"(?<![\w.:/+-])(?:\+\d{7,15}|(?:\+\d{1,3}[ -]?)?(?:\(\d{1,4}\)[ -]?|\d{1,4}[ -])"
                   r"(?:\d{2,8}[ -]){0,3}\d{3,8})(?![\w.:/-])")
PREVIEW_CHARS = 300
_extra_keys: re.Pattern | None = None
_extra_tokens: tuple | None = ()  # mask.fields in lower case; None: not all ASCII (no pre-check)
_enabled = True


def configure(enabled: bool = True, fields: list | tuple = ()) -> None:
    """Apply ``[mask]``: on/off, and extra field names whose values are always masked."""
    global _extra_keys, _extra_tokens, _enabled
    _enabled = bool(enabled)
    names = [str(f).strip() for f in fields if str(f).strip()]
    _extra_keys = re.compile("|".join(f"^{re.escape(n)}$" for n in names), re.I) if names else None
    _extra_tokens = tuple(n.lower() for n in names) if all(n.isascii() for n in names) else None
    is_personal_key.cache_clear()
    _personal.clear()


@functools.lru_cache(maxsize=4096)  # payloads repeat the same few dozen keys
def is_personal_key(key: str) -> bool:
    """True when values under ``key`` are masked whatever they hold."""
    return bool(PII_KEY.search(key) or (_extra_keys is not None and _extra_keys.search(key)))


_personal: dict[str, bool] = {}  # the same answers as is_personal_key, one dict lookup per key


def _is_personal(key: str) -> bool:
    found = _personal.get(key)
    if found is None:
        if len(_personal) >= 4096:  # bounded: hostile payloads may carry endless distinct keys
            _personal.clear()
        found = _personal[key] = is_personal_key(key)
    return found


_THREE_DIGITS = re.compile(r"\d\d\d")
# A card (12–19 digits) or a phone number (7–15) that would be masked has at least seven digits
# joined only by spaces, dashes, brackets or a plus: without such a run both subs are no-ops.
_SEVEN_DIGITS = re.compile(r"(?:\d[ ()+-]*){7}")


def _needs_text_mask(value: str) -> bool:
    return "@" in value or _SEVEN_DIGITS.search(value) is not None


# a credential written into free text: "Authorization: Bearer eyJ…", "password=hunter2",
# "api_key: 8f1e…" (an exception message quoting the request that failed)
CREDENTIAL = re.compile(r"\b((?i:bearer|basic))(\s+)(?=[\w.~+/=-]*[0-9A-Z=+/._~-])[\w.~+/=-]{8,}"
                        r"|\b((?i:passw(?:or)?d|pwd|secret|token|api[_-]?key|access[_-]?key|client[_-]?secret))"
                        r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&\"']+)")


_CREDENTIAL_HINT = re.compile(r"(?i)bearer|basic|passw|pwd|secret|token|key")


def _credential(match: re.Match) -> str:
    if match.group(1):
        return f"{match.group(1)}{match.group(2)}***"
    return f"{match.group(3)}{match.group(4)}***"


def mask_text(value: str) -> str:
    """E-mail addresses, card-like numbers, phone numbers and credentials (``Bearer …``,
    ``password=…``) in free text, masked."""
    if not _enabled:
        return value
    if _CREDENTIAL_HINT.search(value):
        value = CREDENTIAL.sub(_credential, value)
    if "@" in value:
        value = EMAIL.sub("***@***", value)
    if _SEVEN_DIGITS.search(value):  # neither a card nor a phone number has fewer digits in a run
        value = PHONE.sub(_phone, CARD.sub(_card, value))
    return value


def _phone(match: re.Match) -> str:
    digits = sum(c.isdigit() for c in match.group(0))
    return "***" if 7 <= digits <= 15 else match.group(0)


_SEPARATOR = re.compile(r"[ -]")


def _card(match: re.Match) -> str:
    """Mask a 12–19 digit run only when it is shaped like a card number and passes the Luhn
    check card numbers carry. Epoch milliseconds and Redis entry IDs (``1795841908571-0``) are
    digit runs too, and are data:

    * written in groups, a card's groups are 3 to 6 digits (``4111 1111 1111 1111``,
      ``3782 822463 10005``), so ``1795841908571-0`` is not one;
    * 13 digits starting with 1 are a millisecond time (2001–2286); no card network issues
      13-digit numbers starting with 1.
    """
    found = match.group(0)
    groups = _SEPARATOR.split(found.rstrip(" -"))  # the match may end on a separator
    if len(groups) > 1 and not all(3 <= len(g) <= 6 for g in groups):
        return found
    digits = [int(c) for c in found if c.isdigit()]
    if len(digits) == 13 and digits[0] == 1:
        return found
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(reversed(digits)))
    return "****" + found[len(found.rstrip(" -")):] if total % 10 == 0 else found


def _mask(value, key: str = ""):
    if not _enabled:
        return value
    if type(value) is dict:
        return _mask_dict(value)
    if is_personal_key(key) and not isinstance(value, (dict, list)):
        return "***"
    if isinstance(value, dict):
        return {k: _mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, key) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def _mask_dict(value: dict) -> dict:
    """:func:`_mask` of a JSON object, with the common value types handled inline (no call per
    string or number; one cached lookup per key)."""
    out = {}
    for k, v in value.items():
        if type(k) is not str:
            k = str(k)
        t = type(v)
        if t is str:
            if _is_personal(k):
                out[k] = "***"
            elif "@" in v or _SEVEN_DIGITS.search(v):
                out[k] = mask_text(v)
            else:
                out[k] = v
        elif t is dict:
            out[k] = _mask_dict(v)
        elif t is int or t is float or t is bool or v is None:
            out[k] = "***" if _is_personal(k) else v
        else:
            out[k] = _mask(v, k)
    return out


# every literal PII_KEY needs, lower case: on ASCII text, a key PII_KEY matches contains one of them
_PII_TOKENS = ("mail", "phone", "mobile", "name", "address", "street", "card", "iban", "ssn", "passport",
               "birth", "password", "secret", "token")


def _text_may_need_masking(shown: str) -> bool:
    """Whether any key or value in a payload's JSON text could be masked: a superset test on the
    whole text at once (key names, ``@`` and digit runs all appear in it unescaped). Non-ASCII
    text always says yes: case-insensitive matching has non-ASCII equivalents (``ſ`` ~ ``s``)."""
    if not shown.isascii() or "@" in shown or _SEVEN_DIGITS.search(shown):
        return True
    low = shown.lower()
    return any(token in low for token in _PII_TOKENS) or (
        _extra_tokens is None or any(token in low for token in _extra_tokens))


def masked_payload(body, limit: int = 4000) -> str:
    """An already-parsed JSON payload as masked JSON text; empty when longer than ``limit``.

    The unmasked JSON text is checked first, in one pass: a payload with no personal key name,
    no ``@`` and no long digit run anywhere is returned as is, without a walk.
    """
    if body is None:
        return ""
    try:  # orjson: compact UTF-8 JSON, the same text json.dumps gives, several times faster
        shown = orjson.dumps(body).decode("utf-8")
        if _enabled and _text_may_need_masking(shown):
            shown = orjson.dumps(_mask(body)).decode("utf-8")
    except (TypeError, ValueError, RecursionError):  # JSONEncodeError (depth > 254) is a TypeError
        return ""
    return shown if len(shown) <= limit else ""


def preview(payload: bytes | None) -> str:
    """The first characters of a payload with personal data masked (JSON-aware)."""
    if not payload:
        return ""
    try:
        shown = json.dumps(_mask(orjson.loads(payload)), ensure_ascii=False)
    except (orjson.JSONDecodeError, TypeError, ValueError, RecursionError):
        try:
            shown = mask_text(payload[:4 * PREVIEW_CHARS].decode("utf-8"))
        except UnicodeDecodeError:
            return f"<{len(payload)} bytes, not UTF-8: 0x{payload[:16].hex()}…>"
    return shown if len(shown) <= PREVIEW_CHARS else shown[:PREVIEW_CHARS - 1] + "…"


HEADER_KEY_CHARS = 100  # a header name longer than this is cut


def headers_json(headers: dict[str, bytes], limit: int = 200) -> str:
    """Headers as a compact JSON object of text; binary values as hex; personal data masked."""
    out = {}
    for key, value in itertools.islice(headers.items(), 50):
        if key in ("envelope", "payload"):
            continue  # the payload itself: shown (masked) as the preview
        try:
            shown = value.decode("utf-8")
        except UnicodeDecodeError:
            shown = "0x" + value[:32].hex()
        if _enabled and _is_personal(key):
            shown = "***"
        elif "@" in shown or _SEVEN_DIGITS.search(shown):
            shown = mask_text(shown)
        if len(key) > HEADER_KEY_CHARS:  # a name is a label: 200 kB of it is data nobody reads
            key = key[:HEADER_KEY_CHARS - 1] + "…"
        out[key] = shown if len(shown) <= limit else shown[:limit - 1] + "…"
    try:
        return orjson.dumps(out).decode("utf-8")
    except TypeError:  # a key that is not valid UTF-8 text (a lone surrogate): the slow encoder takes it
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))
