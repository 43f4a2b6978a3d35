"""orjson is a speed-up only: on any line, the ingest decoder agrees with the json module."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.ingest import _orjson_loads

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner,
                                                                                         max_size=3), max_leaves=8)


def _verdict(fn, line):
    try:
        return ("ok", repr(fn(line)))
    except ValueError as exc:
        return ("error", type(exc).__name__)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), values, max_size=6))
def test_objects_decode_the_same(obj):
    line = json.dumps(obj)
    assert _verdict(_orjson_loads, line) == _verdict(json.loads, line)
    assert _verdict(_orjson_loads, line.encode()) == _verdict(json.loads, line.encode())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_decodes_or_fails_the_same(text):
    assert _verdict(_orjson_loads, text)[0] == _verdict(json.loads, text)[0]
