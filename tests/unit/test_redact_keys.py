"""Redaction of every key naming a password, token, secret or key (issue 14 pt 6, seed 004), and of
govcon's own API tokens wherever they appear (issue 11 pt 6): properties over generated names and text."""

from __future__ import annotations

import re
import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.redact import MASK, is_secret_key, redact, redact_obj
from engine.tokens import PREFIX

STEMS = ("password", "passwd", "token", "secret", "key", "credential", "passphrase")
_letters = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
# words that cannot form a stem or an exempt word on their own or joined to a stem
_plain = _letters.filter(lambda w: not re.search(r"key|tok|sec|pass|pwd|cred|auth|id|max|min|num|count|type|"
                                                  r"kind|name|len|exp|word|board|stroke|sort|dedup|idem", w))


def _spell(words: list[str], style: str) -> str:
    if style == "camel":
        return words[0] + "".join(w.capitalize() for w in words[1:])
    if style == "upper":
        return "_".join(words).upper()
    return {"snake": "_", "kebab": "-", "dotted": "."}[style].join(words)


_style = st.sampled_from(["snake", "kebab", "dotted", "camel", "upper"])


@pytest.mark.parametrize("key", ["ssh_key", "signing_key", "license_key", "apiKey", "PRIVATE_KEY", "sshKey",
                                 "encryption-key", "master.key", "authtoken", "refresh_tokens", "clientSecret",
                                 "db_password", "X-Api-Key", "key", "secrets", "GITHUB_TOKEN", "passwd"])
def test_every_name_with_a_secret_word_is_secret(key):
    assert is_secret_key(key)
    assert redact_obj({key: "s3cr3t-value"}) == {key: MASK}


@pytest.mark.parametrize("key", ["dedup_key", "dedupKey", "idempotency_key", "idempotencyKey", "key_id", "keyId",
                                 "token_id", "tokenId", "lastTokenId", "max_tokens", "token_count", "keyword",
                                 "token_type", "event", "service", "commandType"])
def test_harmless_names_stay_printable(key):
    """Alerts are deduplicated by dedup_key and idempotency keys; ids, counts and types name no secret."""
    assert not is_secret_key(key)
    assert redact_obj({key: "govcon-breaker-cbe-1a2b3c"}) == {key: "govcon-breaker-cbe-1a2b3c"}


@settings(max_examples=400, deadline=None)
@given(before=st.lists(_plain, max_size=2), stem=st.sampled_from(STEMS), after=st.lists(_plain, max_size=2),
       glued=st.sampled_from(["", "s"]), style=_style, value=st.text(min_size=1, max_size=30))
def test_a_name_containing_a_secret_word_is_always_redacted(before, stem, after, glued, style, value):
    key = _spell([*before, stem + glued, *after], style)
    assert is_secret_key(key), key
    assert redact_obj({key: value, "nested": [{key: value}]}) == {key: MASK, "nested": [{key: MASK}]}


@settings(max_examples=300, deadline=None)
@given(words=st.lists(_plain, min_size=1, max_size=4), style=_style)
def test_a_name_without_a_secret_word_is_never_redacted(words, style):
    key = _spell(words, style)
    assert not is_secret_key(key), key


def _token() -> str:
    return PREFIX + secrets.token_urlsafe(32)  # exactly how engine/tokens.py makes a token's secret


_urlsafe = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=43,
                   max_size=43)


@settings(max_examples=400, deadline=None)
@given(body=_urlsafe, left=st.text(max_size=40), right=st.text(alphabet=" ,;.:!?)\"'\n", max_size=5),
       sep=st.sampled_from(["", " ", "\n", "=", ": ", "(", '"', "token ", "Bearer ", "x_"]))
def test_govcon_tokens_are_redacted_wherever_they_appear(body, left, right, sep):
    token = PREFIX + body
    text = left + sep + token + right
    out = redact(text)
    assert token not in out and body not in out
    assert redact(out) == out  # idempotent


def test_real_tokens_in_log_lines_and_objects():
    tok = _token()
    line = f"agent sent {tok} in the query string ?access={tok}&x=1"
    assert tok not in redact(line) and "in the query string" in redact(line)
    assert tok not in str(redact_obj({"note": f"curl -H 'X: {tok}'", "list": [tok]}))
    assert redact("gvc_ is the prefix of govcon tokens") == "gvc_ is the prefix of govcon tokens"
