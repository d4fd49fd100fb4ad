"""Bytes travel as {"b64": ...} everywhere; anything else passes through untouched."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from easytensor_jupyter.instances import (
    InstanceError,
    NestingError,
    decode_instance,
    decode_instances,
    encode_instance,
    input_kind,
)

json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.binary(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(min_size=2), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(json_like)
def test_round_trip(value: object) -> None:
    assert decode_instance(encode_instance(value)) == value


def test_bad_base64_names_the_path() -> None:
    with pytest.raises(InstanceError, match=r"instance\[1\]\.img\.b64 is not valid base64"):
        decode_instance([1, {"img": {"b64": "***"}}])
    with pytest.raises(InstanceError, match=r"instance\.b64 must be a base64 string"):
        decode_instance({"b64": 3})


@given(st.lists(json_like, max_size=4))
def test_decoding_in_place_matches_decode_instance(values: list[object]) -> None:
    encoded = [encode_instance(v) for v in values]
    decode_instances(encoded, max_depth=100)
    assert encoded == values


def test_decoding_in_place_names_paths_and_refuses_deep_nesting() -> None:
    with pytest.raises(InstanceError, match=r"instances\[1\]\.img\[0\]\.b64 is not valid"):
        decode_instances([1, {"img": [{"b64": "***"}]}], max_depth=10)
    deep: list[object] = [1]
    for _ in range(10_000):  # far past the recursion limit: no recursion
        deep = [deep]
    with pytest.raises(NestingError, match=r"nested deeper than 64 levels"):
        decode_instances([deep], max_depth=64)
    shallow = [[[1, {"b64": "aGk="}]]]
    decode_instances(shallow, max_depth=4)
    assert shallow == [[[1, b"hi"]]]
    with pytest.raises(NestingError, match=r"instances\[0\]\[0\]"):
        decode_instances([[[1]]], max_depth=2)


def test_only_exact_b64_objects_become_bytes() -> None:
    assert decode_instance({"b64": "aGk=", "other": 1}) == {"b64": "aGk=", "other": 1}


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("text", "text"),
        (b"\x89PNG\r\n", "image"),
        (b"\xff\xd8\xff\xe0", "image"),
        (b"\x00\x01", "bytes"),
        ([1], "json"),
        ({"a": 1}, "json"),
        (None, "unknown"),
    ],
)
def test_input_kind(value: object, kind: str) -> None:
    assert input_kind(value) == kind
