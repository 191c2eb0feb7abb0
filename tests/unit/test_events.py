"""The wire codec: every field's validation, and object vs array frames."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import events
from shared.errors import ProtocolError


def parse(obj: object, max_text: int = 4000) -> events.Command:
    return events.parse_command(orjson.dumps(obj), max_text)


def code_of(obj: object | str, max_text: int = 4000) -> str:
    frame = obj if isinstance(obj, str) else orjson.dumps(obj)
    with pytest.raises(ProtocolError) as info:
        events.parse_command(frame, max_text)
    return info.value.code


def test_valid_commands() -> None:
    assert parse({"type": "join", "room": "a"}) == events.Join("a", None)
    assert parse({"type": "join", "room": "a", "since": 0}) == events.Join("a", 0)
    assert parse({"type": "leave", "room": "a"}) == events.Leave("a")
    assert parse({"type": "send", "room": "a", "text": " hi ", "cid": "x"}) == events.Send(
        "a", " hi ", "x"
    )
    assert parse({"type": "history", "room": "a", "before": 5, "limit": 100}) == events.History(
        "a", 5, 100
    )
    assert parse({"type": "ping"}) == events.Ping()


@pytest.mark.parametrize(
    ("obj", "code"),
    [
        ("{", "bad_request"),
        ('"just a string"', "bad_request"),
        ({"room": "a"}, "bad_request"),
        ({"type": None}, "bad_request"),
        ({"type": "nope"}, "unknown_type"),
        ({"type": "join"}, "bad_request"),
        ({"type": "join", "room": ""}, "invalid_room"),
        ({"type": "join", "room": "-a"}, "invalid_room"),
        ({"type": "join", "room": "a" * 65}, "invalid_room"),
        ({"type": "join", "room": "a b"}, "invalid_room"),
        ({"type": "join", "room": "a", "since": True}, "bad_request"),
        ({"type": "join", "room": "a", "since": 1.5}, "bad_request"),
        ({"type": "send", "room": "a"}, "bad_request"),
        ({"type": "send", "room": "a", "text": ""}, "bad_request"),
        ({"type": "send", "room": "a", "text": "\n\t "}, "bad_request"),
        ({"type": "send", "room": "a", "text": ["x"]}, "bad_request"),
        ({"type": "send", "room": "a", "text": "x", "cid": ""}, "bad_request"),
        ({"type": "send", "room": "a", "text": "x", "cid": 5}, "bad_request"),
        ({"type": "history", "room": "a", "limit": 0}, "bad_request"),
        ({"type": "history", "room": "a", "before": 0}, "bad_request"),
    ],
)
def test_refusals(obj: object, code: str) -> None:
    assert code_of(obj) == code


def test_text_limit_is_in_characters() -> None:
    assert isinstance(parse({"type": "send", "room": "a", "text": "é" * 10}, 10), events.Send)
    assert code_of({"type": "send", "room": "a", "text": "é" * 11}, 10) == "too_large"


def test_error_carries_cid_and_room() -> None:
    with pytest.raises(ProtocolError) as info:
        parse({"type": "send", "room": "r", "text": "", "cid": "c"})
    assert (info.value.cid, info.value.room) == ("c", "r")


def test_room_names() -> None:
    for good in ["a", "A9", "room_1.x:y-z", "9" * 64]:
        assert events.valid_room(good)
    for bad in ["", "_a", ".a", "a/b", "a" * 65, "é", None, 5]:
        assert not events.valid_room(bad)


def test_user_names() -> None:
    for good in ["a", "Zoë", "a b", "x" * 32]:
        assert events.valid_user(good)
    for bad in ["", " ", "x" * 33, "a\nb", "a\x00", "\u200b\x07"]:
        assert not events.valid_user(bad)


def test_message_event_shape() -> None:
    assert events.message("r", 2, "u", "t", 9, "c") == {
        "type": "message",
        "room": "r",
        "seq": 2,
        "user": "u",
        "text": "t",
        "ts": 9,
        "cid": "c",
    }
    assert "cid" not in events.message("r", 2, "u", "t", 9)


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_refuse_cleanly(frame: bytes) -> None:
    try:
        events.parse_command(frame, 4000)
    except ProtocolError as exc:
        assert exc.code in {"bad_request", "unknown_type", "invalid_room", "too_large"}


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=10,
)


@given(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["join", "leave", "send", "history", "ping", "x"])},
        optional={
            "room": json_values,
            "text": json_values,
            "since": json_values,
            "before": json_values,
            "limit": json_values,
            "cid": json_values,
        },
    )
)
def test_any_json_command_parses_to_a_valid_command_or_refuses(obj: dict[str, object]) -> None:
    try:
        cmd = parse(obj)
    except ProtocolError:
        return
    room = getattr(cmd, "room", "ok")
    assert events.valid_room(room)
    if isinstance(cmd, events.Send):
        assert cmd.text.strip() and len(cmd.text) <= 4000
