"""Masking of payloads and headers before anything is stored or shown.

Values under keys that name personal data (e-mail, phone, a person's name, address, card,
PIN, password, token, API key, cookie, session, ... by the words of the key, see
``key_words`` and the rules below; plus the names listed in ``mask.fields``) are replaced
with ``***``, an object or array under such a key leaf by leaf. In free text e-mail
addresses, Luhn-valid card numbers, phone numbers and credentials are masked, and JSON or
form-encoded text inside a string has the values of personal keys masked. Binary values are
shown as a short hex prefix, never decoded into markup. ``mask.enabled = false`` stores
payloads as they are (for systems that carry no personal data).
"""
from __future__ import annotations

import functools
import itertools
import json
import re
import urllib.parse

import orjson

# Personal keys are recognised by the words of a key, whatever its case style: ``customerName``,
# ``CustomerName``, ``customer_name``, ``customer-name``, ``customer.name`` and ``CUSTOMER_NAME`` are
# all the words "customer" and "name". A key is personal when
#
# * one of its words is in _PERSONAL_WORDS (``pin`` as a whole word only: ``shipping`` and
#   ``mapping`` are not), or two neighbouring words are a pair of _PERSONAL_PAIRS ("e"+"mail",
#   "api"+"key", "private"+"key"), or a word contains one of _PERSONAL_STEMS (``useremail``,
#   ``dateofbirth``) or ends with one of _PERSONAL_ENDINGS (``accesstoken``, ``jsessionid``);
# * it has the word "name" (or a word ending in it: ``username``, ``surname``) that stands first
#   or alone, or follows any word but one naming a thing that is not a person (_THING_WORDS:
#   ``topicName``, ``serviceName``, ``eventName``, ``fileName``/``filename``, ``hostname``,
#   ``typeName``, ``schemaName`` are not personal; ``customerName``, ``userName``, ``firstName``,
#   ``fullName``, ``name`` are);
# * it has the word "address" or "addr" (or one ending in it) not after a network word
#   (``ipAddress``, ``remote_addr``, ``bootstrapAddress`` are not personal, ``billingAddress`` is).
#
# Street, postcode/zip and the whole value of an address are masked; a city or a country on its
# own is not (a dashboard may group by it). A value under a personal key that is an object or an
# array has every leaf masked.
_PERSONAL_WORDS = frozenset((
    "email", "emails", "mail", "phone", "phones", "telephone", "mobile", "msisdn", "fax", "phonenumber",
    "street", "postcode", "postal", "zip", "zipcode",
    "card", "cards", "creditcard", "cardnumber", "cardholder", "pan", "cvv", "cvc", "cvn",
    "iban", "ssn", "passport", "birth", "birthday", "birthdate", "dob",
    "pin", "pincode", "password", "passwords", "passwd", "pwd", "passphrase", "secret", "secrets",
    "token", "tokens", "authorization", "bearer", "apikey", "accesskey", "secretkey", "privatekey",
    "cookie", "cookies", "session", "sessions", "sessionid", "credential", "credentials"))
_PERSONAL_STEMS = ("email", "password", "passwd", "passport", "birth", "credential", "cookie")
_PERSONAL_ENDINGS = ("token", "secret", "phone", "apikey", "privatekey", "sessionid", "sessid")
# words before "name" that make it the name of a thing, not of a person
_THING_WORDS = frozenset((
    "topic", "service", "event", "group", "file", "host", "type", "schema", "class", "method", "function",
    "field", "table", "column", "database", "db", "queue", "stream", "bucket", "key", "tag", "label",
    "index", "app", "application", "domain", "server", "node", "cluster", "broker", "consumer", "producer",
    "connector", "task", "job", "metric", "attribute", "attr", "param", "parameter", "property", "header",
    "container", "image", "pod", "namespace", "region", "zone", "package", "module", "component",
    "resource", "product", "item", "sku", "brand", "category", "country", "city", "currency", "bank",
    "company", "org", "organization", "organisation", "merchant", "store", "shop", "channel", "device",
    "browser", "os", "platform", "env", "environment", "version", "release", "feature", "flag", "role",
    "permission", "status", "state", "step", "stage", "action", "operation", "op", "command", "handler",
    "span", "trace", "logger", "thread", "process", "volume", "path", "dir", "base", "plan", "project",
    "team", "workflow", "pipeline", "model", "entity", "record", "message", "exception", "error",
    "partition", "subject", "operator", "network", "interface", "font", "color", "colour", "template",
    "layout", "page", "section", "source", "sink", "target", "rule", "alert", "dashboard",
    "cert", "certificate", "algorithm", "cipher", "codec", "format", "mime", "content", "media", "code"))
# words before "address" that make it a network address
_NETWORK_WORDS = frozenset((
    "ip", "ipv4", "ipv6", "mac", "remote", "local", "server", "host", "bind", "listen", "listener",
    "broker", "bootstrap", "socket", "network", "net", "peer", "node", "memory", "endpoint", "proxy",
    "gateway", "inet", "tcp", "udp", "http", "advertised", "client", "wallet", "contract", "base", "web"))
# two words that are one personal word together ("e-mail", "x-api-key", "pass_word")
_PERSONAL_PAIRS = frozenset((("e", "mail"), ("api", "key"), ("private", "key"), ("access", "key"),
                             ("secret", "key"), ("pass", "word"), ("pass", "phrase"), ("pin", "code"),
                             ("zip", "code"), ("post", "code"), ("phone", "number"), ("social", "security")))
_NAME_WORDS = frozenset(("name", "names"))
_ADDRESS_WORDS = frozenset(("address", "addresses", "addr"))
_RUN = re.compile(r"[^\W\d_]+|\d+")  # letters or digits; anything else separates words
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[^A-Z]+")  # ``APIKey`` → API, Key; ``userName`` → user, Name


def key_words(key: str) -> list[str]:
    """The words of a key in lower case: ``"X-API-Key"``, ``"xApiKey"`` and ``"x_api_key"`` are all
    ``["x", "api", "key"]``."""
    words = []
    for run in _RUN.findall(key):
        if run.islower() or run.isupper() or run.isdigit():
            words.append(run)
        else:
            words.extend(_CAMEL.findall(run))
    # casefold: "ſ" is "s"; the dotless "ı" is read as "i" (the regexes this replaced did the same)
    return [w.casefold().replace("ı", "i") for w in words]


def _ends_with_after(words: list[str], heads: frozenset, exceptions: frozenset) -> bool:
    """Whether a word is one of ``heads`` (or ends in one: ``username``) and the word before it (or
    the part before it: ``file`` of ``filename``) is not one of ``exceptions``."""
    for i, word in enumerate(words):
        if word in heads:
            if i == 0 or words[i - 1] not in exceptions:
                return True
            continue
        for head in heads:
            if len(word) > len(head) and word.endswith(head):
                if word[:-len(head)] not in exceptions:
                    return True
                break
    return False


def _personal_words(words: list[str]) -> bool:
    previous = ""
    for word in words:
        if word in _PERSONAL_WORDS or (previous, word) in _PERSONAL_PAIRS:
            return True
        if word.endswith(_PERSONAL_ENDINGS) or any(stem in word for stem in _PERSONAL_STEMS):
            return True
        previous = word
    return _ends_with_after(words, _NAME_WORDS, _THING_WORDS) or \
        _ends_with_after(words, _ADDRESS_WORDS, _NETWORK_WORDS)


# starts only where a run begins and never backtracks into it: linear on a 1 MB "xxxx…"
EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]++@[\w-]++(?:\.[\w-]++)+")
# 12–19 digits, grouped by spaces, dashes or dots (which groups make a card: see _card)
CARD = re.compile(r"\b(?:\d[ .-]?){12,19}\b")
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
    return _personal_words(key_words(key)) or (_extra_keys is not None and _extra_keys.search(key) is not None)


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
# joined only by spaces, dashes, dots, brackets or a plus: without such a run both subs are no-ops.
_SEVEN_DIGITS = re.compile(r"(?:\d[ ()+.-]*){7}")


# a credential written into free text: "Authorization: Bearer eyJ…", "password=hunter2",
# "api_key: 8f1e…" (an exception message quoting the request that failed)
CREDENTIAL = re.compile(r"\b((?i:bearer|basic))(\s+)(?=[\w.~+/=-]*[0-9A-Z=+/._~-])[\w.~+/=-]{8,}"
                        r"|\b((?i:passw(?:or)?d|pwd|secret|token|api[_-]?key|access[_-]?key|client[_-]?secret))"
                        r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&\"']+)")


_CREDENTIAL_HINT = re.compile(r"(?i)b(?:earer|asic)|p(?:assw|wd)|secret|token|key")


def _needs_text_mask(value: str) -> bool:
    """Whether :func:`mask_text` could change ``value``: an "@" (e-mail), a "=" (form-encoded
    text, ``password=…``), a run of seven digits (card, phone), or a colon or a space beside a
    credential word (``Bearer …``, ``api_key: …``) or a quote (JSON). Whitespace other than a
    space is not printable. Most values (IDs, names of things) answer no in a few C calls."""
    return ("@" in value or "=" in value or _SEVEN_DIGITS.search(value) is not None
            or ((":" in value or " " in value or not value.isprintable())
                and ('"' in value or _CREDENTIAL_HINT.search(value) is not None)))


# JSON written into text (a header value, an exception message): a quoted key and its colon
_JSON_KEY = re.compile(r'"((?:[^"\\\n]|\\.){1,200}+)"\s*+:\s*+')
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*+"')
_JSON_SCALAR = re.compile(r"[\w.+-]++")
_JSON_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*+"|[\[\]{}]')
# inside a masked object or array: a key (a string and its colon) stays, every other value goes
_JSON_LEAF = re.compile(r'("(?:[^"\\]|\\.)*+")(\s*+:)?|[\w.+-]++')
_MASKED_JSON = '"***"'


def _json_key(raw: str) -> str:
    if "\\" in raw:
        try:
            return json.loads(f'"{raw}"')
        except ValueError:
            return raw
    return raw


def _leaf(match: re.Match) -> str:
    return match.group(0) if match.group(2) is not None else _MASKED_JSON


def _mask_json_text(value: str) -> str:
    """JSON in text (whole or embedded, well-formed or cut off) with the values of personal keys
    replaced by ``"***"``; an object or array under such a key has every value replaced, its keys
    and brackets kept. One pass, no parse: the text's own layout stays."""
    out = []
    pos = done = 0  # where the next key is looked for; how far the text is copied to ``out``
    n = len(value)
    while True:
        match = _JSON_KEY.search(value, pos)
        if match is None:
            break
        start = match.end()
        if not _is_personal(_json_key(match.group(1))):
            pos = start
            continue
        out.append(value[done:start])
        first = value[start:start + 1]
        if first == '"':
            string = _JSON_STRING.match(value, start)
            end = string.end() if string else n  # cut off inside the string: the rest is its value
            out.append(_MASKED_JSON)
        elif first in ("{", "["):
            depth, end = 0, n
            for token in _JSON_BRACKET.finditer(value, start):
                bracket = token.group(0)
                if bracket in ("{", "["):
                    depth += 1
                elif bracket in ("}", "]"):
                    depth -= 1
                    if depth == 0:
                        end = token.end()
                        break
            out.append(_JSON_LEAF.sub(_leaf, value[start:end]))
        else:
            scalar = _JSON_SCALAR.match(value, start)
            end = scalar.end() if scalar else start
            if scalar:
                out.append(_MASKED_JSON)
        pos = done = end
    if not out:
        return value
    out.append(value[done:])
    return "".join(out)


# form-encoded text and URL query strings: "user=bob&email=a%40b.co", "…/cb?token=x&state=1"
_FORM_PAIR = re.compile(r"(?<![^\s?&;(\"'])([\w.%+\[\]-]{1,100}+)=([^&;\s\"'#]*+)")


def _form_pair(match: re.Match) -> str:
    key = match.group(1)
    if "%" in key or "+" in key:
        key = urllib.parse.unquote_plus(key)
    if match.group(2) and _is_personal(key):
        return f"{match.group(1)}=***"
    return match.group(0)


def _credential(match: re.Match) -> str:
    if match.group(1):
        return f"{match.group(1)}{match.group(2)}***"
    return f"{match.group(3)}{match.group(4)}***"


def mask_text(value: str) -> str:
    """E-mail addresses, card numbers, phone numbers and credentials (``Bearer …``,
    ``password=…``) in free text, masked; JSON in the text has the values of personal keys
    masked, and so has form-encoded text (``email=a%40b.co&…``, a URL's query string)."""
    if not _enabled:
        return value
    if '"' in value and ":" in value:
        value = _mask_json_text(value)
    if "=" in value:
        value = _FORM_PAIR.sub(_form_pair, value)
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


_SEPARATOR = re.compile(r"[ .-]")


def _card(match: re.Match) -> str:
    """Mask a 12–19 digit run only when it is shaped like a card number and passes the Luhn
    check card numbers carry. Epoch milliseconds and Redis entry IDs (``1795841908571-0``) are
    digit runs too, and are data:

    * written in groups, a card's groups are 3 to 6 digits (``4111 1111 1111 1111``,
      ``3782 822463 10005``), so ``1795841908571-0`` is not one;
    * written with dots, a card is in groups of four (``4111.1111.1111.1111``; the last group may
      be shorter), so an IP address, a version or a decimal number is not one;
    * 13 digits starting with 1 are a millisecond time (2001–2286); no card network issues
      13-digit numbers starting with 1.
    """
    found = match.group(0)
    written = found.rstrip(" .-")  # the match may end on a separator
    if "." in written:
        groups = written.split(".")
        if len(groups) < 4 or not all(len(g) == 4 for g in groups[:-1]) or not 1 <= len(groups[-1]) <= 4:
            return found
    else:
        groups = _SEPARATOR.split(written)
        if len(groups) > 1 and not all(3 <= len(g) <= 6 for g in groups):
            return found
    digits = [int(c) for c in found if c.isdigit()]
    if len(digits) == 13 and digits[0] == 1:
        return found
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(reversed(digits)))
    return "****" + found[len(written):] if total % 10 == 0 else found


def _mask(value, key: str = ""):
    if not _enabled:
        return value
    if key and is_personal_key(key):
        return _mask_all(value)
    if type(value) is dict:
        return _mask_dict(value)
    if isinstance(value, dict):
        return {k: _mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def _mask_all(value):
    """A value under a personal key: every leaf ``***``, the keys and the shape kept."""
    if isinstance(value, dict):
        return {(k if type(k) is str else str(k)): _mask_all(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_all(v) for v in value]
    return "***"


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
            elif "@" in v or "=" in v or _SEVEN_DIGITS.search(v) or (
                    (":" in v or " " in v or not v.isprintable()) and ('"' in v or _CREDENTIAL_HINT.search(v))):
                out[k] = mask_text(v)  # what _needs_text_mask says, inline
            else:
                out[k] = v
        elif t is dict:
            out[k] = _mask_all(v) if _is_personal(k) else _mask_dict(v)
        elif t is int or t is float or t is bool or v is None:
            out[k] = "***" if _is_personal(k) else v
        else:
            out[k] = _mask(v, k)
    return out


# on ASCII text, lower case, a personal key contains one of these (tests/unit/test_mask_spec.py checks
# every word of the rules has one), and so does text mask_text would change for a credential
_PII_TOKENS = ("mail", "phone", "mobile", "msisdn", "fax", "name", "addr", "street", "post", "zip", "card",
               "pan", "cvv", "cvc", "cvn", "iban", "ssn", "social", "pass", "birth", "dob", "pin", "pwd",
               "secret", "token", "auth", "bearer", "basic", "key", "cookie", "session", "sessid",
               "credential")


def _text_may_need_masking(shown: str) -> bool:
    """Whether any key or value in a payload's JSON text could be masked: a superset test on the
    whole text at once (key names, ``@`` and digit runs all appear in it unescaped). Non-ASCII
    text always says yes: case-insensitive matching has non-ASCII equivalents (``ſ`` ~ ``s``)."""
    if not shown.isascii() or "@" in shown or "%" in shown or "\\u" in shown or _SEVEN_DIGITS.search(shown):
        return True  # "%": a URL-encoded key of form text; "\\u": an escaped key of JSON in a string
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
        elif _needs_text_mask(shown):
            shown = mask_text(shown)
        if len(key) > HEADER_KEY_CHARS:  # a name is a label: 200 kB of it is data nobody reads
            key = key[:HEADER_KEY_CHARS - 1] + "…"
        out[key] = shown if len(shown) <= limit else shown[:limit - 1] + "…"
    try:
        return orjson.dumps(out).decode("utf-8")
    except TypeError:  # a key that is not valid UTF-8 text (a lone surrogate): the slow encoder takes it
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))
