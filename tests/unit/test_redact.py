"""Redaction: secrets by key name and by shape, idempotent, fast on hostile input, and in log records."""

from __future__ import annotations

import logging
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.redact import MASK, RedactingFilter, is_secret_key, redact, redact_obj

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1c2s3n\nq9Zx==\n-----END RSA PRIVATE KEY-----"


@pytest.mark.parametrize("text, secret, kept", [
    ("Authorization: Bearer eyAbc.def-123_456", "eyAbc.def-123_456", "Authorization"),
    ("sent with bearer abcdefghijklmnop", "abcdefghijklmnop", "bearer"),
    ('curl -H "Authorization: Basic dXNlcjpwYXNzd29yZA=="', "dXNlcjpwYXNzd29yZA==", "curl"),
    ("login failed: password=hunter2 user=bob", "hunter2", "user=bob"),
    ("db_password: 'correct horse battery'", "correct horse battery", "db_password"),
    ('{"token": "tk-77aa", "rule": "x"}', "tk-77aa", '"rule": "x"'),
    ("X-Api-Key: zz-99-yy", "zz-99-yy", "X-Api-Key"),
    ("https://x.example/hook?token=abc123&mode=1", "abc123", "mode=1"),
    ("postgresql://govcon:s3cr3t@db.internal:5432/gov", "s3cr3t", "govcon:[REDACTED]@db.internal:5432/gov"),
    ("aws key AKIAIOSFODNN7EXAMPLE in env", "AKIAIOSFODNN7EXAMPLE", "in env"),
    ("routing 0123456789abcdef0123456789ABCDEF.", "0123456789abcdef0123456789ABCDEF", "routing"),
    ("posted to https://hooks.slack.com/services/T000/B000/XXXXXXXX today",
     "T000/B000/XXXXXXXX", "https://hooks.slack.com/services/[REDACTED] today"),
    ("push with ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789 ok", "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "ok"),
    ("slack xoxb-123456789012-abcdefABCDEF", "xoxb-123456789012-abcdefABCDEF", "slack"),
    (f"key follows\n{PEM}\nand after", "MIIEpAIBAAKCAQEA1c2s3n", "and after"),
    ("truncated -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg", "MIIEvQIBADANBg", "truncated"),
])
def test_secret_shapes_are_redacted_and_their_context_kept(text, secret, kept):
    out = redact(text)
    assert secret not in out
    assert kept in out
    assert "[REDACTED" in out


@pytest.mark.parametrize("text", [
    "Circuit breaker tripped: High Error Rate (restart_service)",
    "errorRate > 0.05 over 5m: reverted to L3 and cleared the whitelist",
    "dedup_key: govcon-breaker-cbe-1a2b3c4d5e6f",
    "Basic configuration was reloaded",
    "audit hash " + "ab" * 32,  # a sha256 is 64 hex digits, not a routing key
    "incident INC-4411 severity=critical, rollbackRate 0.12",
])
def test_ordinary_operator_text_is_left_alone(text):
    assert redact(text) == text


def test_redact_obj_masks_values_under_secret_keys_at_any_depth():
    doc = {"dbPassword": "x", "X-Api-Key": "k", "client_secret": 7, "auth_token": "t", "routingKey": "r",
           "dedup_key": "govcon-kill-switch", "max_tokens": 5, "empty_password": "",
           "nested": [{"Authorization": "Bearer q"}, {"note": "password=abc", "ok": 1.5, "flag": True}]}
    assert redact_obj(doc) == {
        "dbPassword": MASK, "X-Api-Key": MASK, "client_secret": MASK, "auth_token": MASK, "routingKey": MASK,
        "dedup_key": "govcon-kill-switch", "max_tokens": 5, "empty_password": "",
        "nested": [{"Authorization": MASK}, {"note": "password=[REDACTED]", "ok": 1.5, "flag": True}]}
    assert doc["dbPassword"] == "x"  # a copy: the caller's dict is untouched


@pytest.mark.parametrize("key, secret", [
    ("password", True), ("PASSWD", True), ("private-key", True), ("apiKey", True), ("aws_access_key", True),
    ("credentials", True), ("dedup_key", False), ("tokens", True), ("keyword", False), ("event", False), (3, False),
])
def test_secret_key_names(key, secret):
    assert is_secret_key(key) is secret


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_redact_is_idempotent_and_never_raises(text):
    once = redact(text)
    assert redact(once) == once


_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ", max_size=40)
_secret = st.one_of(
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=16, max_size=16).map(lambda s: "AKIA" + s),
    st.text(alphabet="abcdefABCDEF0123456789", min_size=32, max_size=32),
    st.text(alphabet="abcdefghijABCDEFGHIJ0123456789", min_size=36, max_size=36).map(lambda s: "ghp_" + s),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789!#%", min_size=6, max_size=30)
    .map(lambda s: "Zq" + s),  # used as a password value below
)


@settings(max_examples=500, deadline=None)
@given(_word, _secret, _word, st.sampled_from(["{s}", "password={s}", "token: {s}", "Bearer {s}",
                                               "https://u:{s}@host.example/x"]))
def test_a_secret_anywhere_in_a_line_is_removed(before, secret, after, template):
    if secret.startswith("Zq") and template == "{s}":
        template = "password={s}"  # a bare password has no shape; only its key gives it away
    line = f"{before} {template.format(s=secret)} {after}"
    assert secret not in redact(line)


def test_hostile_input_is_redacted_in_linear_time():
    for text in ("a." * 100_000, "password" * 25_000, "password= " * 20_000, "x://" * 50_000, ":" * 200_000):
        started = time.perf_counter()
        redact(text)
        assert time.perf_counter() - started < 2.0, text[:20]


def test_redacting_filter_cleans_messages_arguments_and_tracebacks(caplog):
    logger = logging.getLogger("govcon.test.redact")
    logger.addFilter(RedactingFilter())
    try:
        with caplog.at_level(logging.INFO, logger="govcon.test.redact"):
            logger.info("connecting to %s with token=%s", "https://bob:pw123@db.example.com/x", "tk-secret-1")
            try:
                raise ValueError("login refused for password=hunter2")
            except ValueError:
                logger.exception("sink failed with Bearer abcdefghijklmno")
    finally:
        logger.filters.clear()
    text = caplog.text
    for secret in ("pw123", "tk-secret-1", "hunter2", "abcdefghijklmno"):
        assert secret not in text
    assert "bob:[REDACTED]@db.example.com" in text and "ValueError" in text
    assert caplog.records[0].getMessage() == \
        "connecting to https://bob:[REDACTED]@db.example.com/x with token=[REDACTED]"
