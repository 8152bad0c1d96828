"""KQL literals: the only way a value enters query text.

Every value a user supplies is validated upstream and rendered here as a typed literal.
Strings are double-quoted with the documented backslash escapes (``\\"``, ``\\\\``, ``\\n``,
``\\r``, ``\\t``) so no byte of input can end the literal or start a new clause; other control
characters are refused (validation rejects them before they get here).
Recipient addresses are PII and are rendered as obfuscated literals (``h"..."``), which
Log Analytics redacts from its query logs.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

_SIMPLE_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(ch: str) -> str:
    if ch in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[ch]
    if is_control_char(ch):
        raise ValueError("control characters cannot be sent in a KQL string literal")
    return ch


def is_control_char(ch: str) -> bool:
    """C0/C1 controls, DEL and the Unicode line/paragraph separators."""
    code = ord(ch)
    return code < 0x20 or 0x7F <= code <= 0x9F or code in (0x2028, 0x2029)


def string_literal(value: str, *, obfuscated: bool = False) -> str:
    """A double-quoted KQL string literal; ``obfuscated`` adds the ``h`` prefix for PII."""
    body = "".join(_escape_char(ch) for ch in value)
    return f'{"h" if obfuscated else ""}"{body}"'


def datetime_literal(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("datetimes sent to KQL must be timezone-aware (UTC)")
    utc = value.astimezone(UTC)
    return f"datetime({utc.strftime('%Y-%m-%dT%H:%M:%S')}.{utc.microsecond:06d}0Z)"


def timespan_literal(value: timedelta) -> str:
    ticks = round(value.total_seconds() * 10_000_000)
    return f"totimespan({ticks})" if ticks < 0 else _positive_timespan(value)


def _positive_timespan(value: timedelta) -> str:
    milliseconds = round(value.total_seconds() * 1000)
    return f"{milliseconds}ms"


def real_literal(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError("only finite numbers can be sent to KQL")
    return f"real({value!r})"


def long_literal(value: int) -> str:
    return f"long({int(value)})"


def bool_literal(value: bool) -> str:
    return "true" if value else "false"


def literal(value: object, kusto_type: str, *, obfuscated: bool = False) -> str:
    """Render ``value`` as a literal of the declared Kusto type."""
    if kusto_type == "string":
        if not isinstance(value, str):
            raise TypeError(f"expected str for a string literal, got {type(value).__name__}")
        return string_literal(value, obfuscated=obfuscated)
    if kusto_type == "datetime":
        if not isinstance(value, datetime):
            raise TypeError("expected datetime")
        return datetime_literal(value)
    if kusto_type == "timespan":
        if not isinstance(value, timedelta):
            raise TypeError("expected timedelta")
        return timespan_literal(value)
    if kusto_type == "real":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError("expected a number")
        return real_literal(float(value))
    if kusto_type == "long":
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("expected int")
        return long_literal(value)
    if kusto_type == "bool":
        if not isinstance(value, bool):
            raise TypeError("expected bool")
        return bool_literal(value)
    raise ValueError(f"unsupported literal type {kusto_type}")


# --- reading literals back (the Log Analytics stand-in binds the `let` prelude with these) ---

_STRING_RE = re.compile(r'h?"((?:[^"\\]|\\.)*)"\Z', re.S)
_DATETIME_RE = re.compile(r"datetime\((\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{7})Z\)\Z")
_ESCAPES_BACK = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "'": "'"}


def parse_literal(text: str) -> object:
    """Parse a literal this module rendered back into a Python value."""
    text = text.strip()
    if match := _STRING_RE.match(text):
        return _unescape(match.group(1))
    if match := _DATETIME_RE.match(text):
        base = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
        return base + timedelta(microseconds=int(match.group(2)[:6]))
    if text in ("true", "false"):
        return text == "true"
    if match := re.fullmatch(r"long\((-?\d+)\)", text):
        return int(match.group(1))
    if match := re.fullmatch(r"real\(([-+0-9.eE]+)\)", text):
        return float(match.group(1))
    if match := re.fullmatch(r"(\d+)ms", text):
        return timedelta(milliseconds=int(match.group(1)))
    if match := re.fullmatch(r"totimespan\((-?\d+)\)", text):
        return timedelta(microseconds=int(match.group(1)) // 10)
    raise ValueError(f"not a literal this service renders: {text[:40]!r}")


def _unescape(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        out.append(_ESCAPES_BACK[body[i + 1]])
        i += 2
    return "".join(out)
