"""Token handling shared by ``/ws`` and the HTTP API, without a server."""

from __future__ import annotations

import jwt
import pytest

from gateway.auth import bearer_token, identify, identify_request, mint
from shared.errors import Refused

SECRET = "unit-test-secret-" + "0123456789abcdef" * 2


@pytest.mark.parametrize(
    ("authorization", "query", "expected"),
    [
        ("Bearer abc.def.ghi", None, "abc.def.ghi"),
        ("bearer  abc.def.ghi ", None, "abc.def.ghi"),  # the scheme is case-insensitive
        ("Bearer abc.def.ghi", "from.the.query", "abc.def.ghi"),  # the header wins
        (None, "from.the.query", "from.the.query"),
        ("Basic YWxpY2U6cHc=", "from.the.query", "from.the.query"),  # not ours: look further
        ("Basic YWxpY2U6cHc=", None, None),
        ("Bearer", None, None),
        (None, "", None),
        (None, None, None),
    ],
)
def test_bearer_token(authorization: str | None, query: str | None, expected: str | None) -> None:
    assert bearer_token(authorization, query) == expected


def test_identify_request() -> None:
    # Anonymous mode: the API is open, whatever the request carries.
    assert identify_request("", None) is None
    assert identify_request("", "not.a.token") is None
    who = identify_request(SECRET, mint(SECRET, "erin", rooms=["lobby", "team-*"]))
    assert who is not None and (who.user, who.auth) == ("erin", "token")
    assert who.may_join("team-a") and not who.may_join("secret")
    with pytest.raises(Refused, match="token required"):
        identify_request(SECRET, None)
    with pytest.raises(Refused, match="invalid token"):
        identify_request(SECRET, mint("another-secret-" + "x" * 32, "erin"))


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"nbf": 4102444800}, "The token is not yet valid"),  # 2100-01-01
        ({"iat": 4102444800}, "The token is not yet valid"),
        ({"aud": "someone-else"}, "Invalid audience"),
        ({"rooms": "lobby"}, "rooms claim must be a list of strings"),
    ],
)
def test_tokens_refused_for_their_claims(claims: dict[str, object], reason: str) -> None:
    token = jwt.encode({"sub": "erin", **claims}, SECRET, algorithm="HS256")
    with pytest.raises(Refused, match=reason) as refused:
        identify(SECRET, None, token)
    assert refused.value.code == 4001
