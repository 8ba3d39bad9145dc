"""The one JSON body reader (apps/core/request_body.py): depth bounded, every
refusal a ValueError, and ordinary bodies untouched."""

import pytest

from apps.core.request_body import MAX_JSON_DEPTH, JsonTooDeep, json_loads


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("kind", [str, bytes])
def test_nesting_up_to_the_bound_parses_and_one_more_is_refused(kind):
    def encode(text):
        return text if kind is str else text.encode()

    assert json_loads(encode(nested(MAX_JSON_DEPTH)))
    assert json_loads(encode('{"a":' * MAX_JSON_DEPTH + "1" + "}" * MAX_JSON_DEPTH))
    with pytest.raises(JsonTooDeep):
        json_loads(encode(nested(MAX_JSON_DEPTH + 1)))
    with pytest.raises(JsonTooDeep):
        json_loads(encode('{"a":' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1)))


@pytest.mark.parametrize("depth", [1_000, 100_000, 1_000_000])
def test_a_depth_past_the_recursion_limit_is_a_value_error_not_a_recursion_error(depth):
    with pytest.raises(ValueError):
        json_loads(nested(depth).encode())


def test_many_brackets_side_by_side_or_inside_strings_are_fine():
    wide = "[" + ",".join(["[]"] * 10_000) + "]"
    assert len(json_loads(wide)) == 10_000
    assert json_loads('{"text": "' + "[" * 1000 + '"}') == {"text": "[" * 1000}


@pytest.mark.parametrize("raw", [b"{nope", b"\xff\xfe", b""])
def test_what_is_not_json_is_a_value_error(raw):
    with pytest.raises(ValueError):
        json_loads(raw)
