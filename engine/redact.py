"""Secret redaction for every alert and log line: tokens, passwords and keys never leave the process.

Two layers: values under keys that name a secret (``password``, ``api_key``, ``authorization`` …) are
replaced whole; free text is scanned for secrets by shape (bearer tokens, ``password=…`` pairs,
``user:password@`` in URLs, govcon's own API tokens (``gvc_…``), AWS access keys, PagerDuty routing keys,
Slack webhook paths, GitHub tokens, PEM private keys). ``redact`` is idempotent: redacting twice changes
nothing.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "[REDACTED]"

# A key "names a secret" when one of its words (snake, kebab, dotted or camel case) contains one of these
# (seed 004: password, token, secret, key): ``db_password``, ``X-Api-Key``, ``ssh_key``, ``signingKey``,
# ``PRIVATE_KEY``, ``authtoken``, ``refresh_tokens``. Erring towards redaction is the safe side, so the only
# exceptions are names that plainly do not hold a secret (below).
_SECRET_STEMS = re.compile(r"passw(?:or)?d|passphrase|pwd|token|secret|key|credential|authorization")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
#: whole names that hold no secret: ``dedup_key`` / ``idempotency_key`` are the stable ids alerts are
#: deduplicated by (a receiver needs them in clear, and they are derived from public ids: govcon-breaker-…);
#: ``key_id`` names which audit HMAC key signed an entry, not the key; ``token_id`` is a token's public id
#: (tok-…, shown by `govcon tokens list`), ``sort_key`` and ``keyword`` are not keys at all.
_HARMLESS_NAMES = frozenset({"dedup_key", "dedupe_key", "idempotency_key", "sort_key", "key_id", "token_id",
                             "last_token_id", "keyword", "keywords", "keyboard", "keystroke", "keystrokes"})
#: a secret's id, count, type or name is not the secret (``token_count``, ``key_type``, ``max_tokens``)
_HARMLESS_LAST = frozenset({"id", "ids", "count", "type", "kind", "name", "length", "len", "expiry",
                            "expires", "expired"})
#: token limits of language models (``max_tokens``, ``num_tokens``) are numbers, not tokens
_TOKEN_LIMITS = frozenset({"max", "min", "num"})

# Key words that introduce a secret value in free text (``password=…``, ``"token": "…"``, ``Authorization: …``).
_PAIR_WORDS = (r"password|passwd|pwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|"
               r"private[_-]?key|routing[_-]?key|(?:ssh|signing|license|encryption|master)[_-]?key|"
               r"credentials?|authorization")
_VALUE = r"""(?:(?:bearer|basic|token)\s+)?(?:"[^"\n]*"|'[^'\n]*'|[^\s,;&"'<>)}\]]+)"""

_PAIR_HINT = re.compile(_PAIR_WORDS, re.I)
_PAIR = re.compile(r"(?i)(\b[\w.\-]{0,40}(?:" + _PAIR_WORDS + r")[\w\-]{0,40}[\"']?\s{0,10}[:=]\s{0,10})"
                   r"(?!\[REDACTED)" + _VALUE)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM private keys, whole blocks (an unterminated block is cut to the end of the text)
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.S),
     "[REDACTED PRIVATE KEY]"),
    # user:password@host in URLs: keep the scheme, user and host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]{0,30}://[^\s/:@]{1,256}):[^\s/]{0,256}@"), r"\1:" + MASK + "@"),
    # key = value, key: value, "key": "value" (the key may carry a prefix: db_password, X-Api-Key)
    (_PAIR, r"\1" + MASK),
    # govcon's own API tokens (engine/tokens.py: "gvc_" + 43 URL-safe characters), wherever they appear
    (re.compile(r"gvc_[A-Za-z0-9_\-]{16,}"), MASK),
    # Authorization header values on their own
    (re.compile(r"(?i)\b(bearer)\s+(?!\[REDACTED)[^\s\"'<>]+"), r"\1 " + MASK),
    (re.compile(r"\b(Basic)\s+(?=[A-Za-z0-9+/]*[0-9+/=])[A-Za-z0-9+/]{8,}={0,2}"), r"\1 " + MASK),
    # Slack incoming webhook paths
    (re.compile(r"(?i)(hooks\.slack\.com/(?:services|workflows|triggers)/)(?!\[REDACTED)[A-Za-z0-9/_\-]+"),
     r"\1" + MASK),
    # Slack tokens, GitHub tokens, AWS access key ids, JSON web tokens
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"), MASK),
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,255}|github_pat_[A-Za-z0-9_]{20,255})\b"), MASK),
    (re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"), MASK),
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]+"), MASK),
    # PagerDuty routing (integration) keys: 32 hex digits standing alone
    (re.compile(r"(?i)(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])"), MASK),
)


def is_secret_key(key: Any) -> bool:
    """Whether a mapping key names a secret (its value is then redacted whatever it looks like)."""
    if not isinstance(key, str):
        return False
    norm = _CAMEL.sub("_", key).lower()
    norm = re.sub(r"[\s.\-_]+", "_", norm).strip("_")
    if not _SECRET_STEMS.search(norm) or norm in _HARMLESS_NAMES:
        return False
    words = norm.split("_")
    if len(words) == 2 and words[0] in _TOKEN_LIMITS and words[1] in ("token", "tokens"):
        return False
    return not (len(words) > 1 and words[-1] in _HARMLESS_LAST)


def redact(text: Any) -> str:
    """``text`` with every secret it contains replaced by ``[REDACTED]``."""
    if not isinstance(text, str):
        text = str(text)
    for pattern, replacement in _PATTERNS:
        if pattern is _PAIR and not _PAIR_HINT.search(text):
            continue  # the pair pattern backtracks over every word; most lines have no key word at all
        text = pattern.sub(replacement, text)
    return text


def redact_obj(obj: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings, numbers) with its secrets redacted."""
    if isinstance(obj, dict):
        return {k: (MASK if is_secret_key(k) and v not in (None, "") else redact_obj(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v) for v in obj]
    if isinstance(obj, str):
        return redact(obj)
    return obj


class RedactingFilter(logging.Filter):
    """Redacts a record's message (arguments merged in) and its traceback before any handler sees it.

    Add it to handlers (``handler.addFilter(RedactingFilter())``) so records of every logger are
    covered; on a logger it covers only records logged on that very logger.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: redact what there is
            message = f"{record.msg} {record.args}" if record.args else str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
