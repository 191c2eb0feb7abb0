"""Who is connecting: an anonymous name, or a verified JWT (HS256)."""

from __future__ import annotations

import fnmatch
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

import jwt

from shared import errors
from shared.errors import Refused
from shared.events import valid_user


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    auth: str  # "anonymous" | "token"
    rooms: tuple[str, ...] | None = None  # allowed room names or patterns; None: any

    def may_join(self, room: str) -> bool:
        """Whether the token's ``rooms`` claim (if any) allows this room."""
        return self.rooms is None or any(fnmatch.fnmatchcase(room, p) for p in self.rooms)


def identify(secret: str, user: str | None, token: str | None) -> Identity:
    """Resolve the identity of a connection from its query parameters."""
    if not secret:
        if user is None:
            return Identity(f"guest-{secrets.token_hex(3)}", "anonymous")
        if not valid_user(user):
            raise Refused(errors.POLICY_VIOLATION, "user names are 1-32 printable characters")
        return Identity(user, "anonymous")
    if not token:
        raise Refused(errors.UNAUTHORIZED, "token required")
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["sub"]})
    except jwt.PyJWTError as exc:
        raise Refused(errors.UNAUTHORIZED, f"invalid token: {exc}") from None
    sub = claims["sub"]
    if not valid_user(sub):
        raise Refused(errors.UNAUTHORIZED, "token subject is not a valid user name")
    rooms = claims.get("rooms")
    if rooms is not None and not (
        isinstance(rooms, Sequence)
        and not isinstance(rooms, str)
        and all(isinstance(r, str) for r in rooms)
    ):
        raise Refused(errors.UNAUTHORIZED, "rooms claim must be a list of strings")
    return Identity(sub, "token", tuple(rooms) if rooms is not None else None)


def bearer_token(authorization: str | None, query_token: str | None) -> str | None:
    """The JWT an HTTP request carries: ``Authorization: Bearer <jwt>``, else ``?token=``.

    ``None`` when it carries neither (another ``Authorization`` scheme counts as none).
    """
    if authorization:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return query_token or None


def identify_request(secret: str, token: str | None) -> Identity | None:
    """Who calls the HTTP API: ``None`` in anonymous mode (the API is open), else the token's
    identity, verified exactly like a ``/ws`` token (:class:`Refused` when it is not valid).
    """
    if not secret:
        return None
    # The same checks as the WebSocket: one place decides what a valid token is.
    return identify(secret, None, token)


def mint(secret: str, user: str, ttl_s: int = 3600, rooms: list[str] | None = None) -> str:
    """A signed token for local testing (a real app issues these from its login)."""
    claims: dict[str, object] = {"sub": user, "exp": int(time.time()) + ttl_s}
    if rooms is not None:
        claims["rooms"] = rooms
    return jwt.encode(claims, secret, algorithm="HS256")
