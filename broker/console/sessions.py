"""Console sessions: who is looking, by a random id in an HttpOnly cookie.

The browser never holds the token: it sends it once to sign in, and from then on only the session
cookie (HttpOnly, SameSite=Strict, Secure over TLS), which names the session by a random id. The
token stays in the broker's memory, keyed by a hash of that id, and is gone when the session ends or
the broker stops; it is never written anywhere or put in a URL. Each session has its own CSRF token,
which every write must echo in a header (a page of another origin cannot read it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

COOKIE = "tidelog_console"
SESSION_TTL_S = 8 * 3600
MAX_SESSIONS = 10_000


@dataclass(slots=True)
class Session:
    token: str | None  # None when the broker needs no token
    csrf: str
    expires_at: float

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given, self.csrf)


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    def __init__(self, ttl_s: float = SESSION_TTL_S) -> None:
        self._ttl_s = ttl_s
        self._by_key: dict[str, Session] = {}

    def create(self, token: str | None) -> tuple[str, Session]:
        """A new session: its id (for the cookie) and the session."""
        now = time.monotonic()
        if len(self._by_key) >= MAX_SESSIONS:
            self._by_key = {k: s for k, s in self._by_key.items() if s.expires_at > now}
            while len(self._by_key) >= MAX_SESSIONS:  # still full: the oldest goes
                del self._by_key[next(iter(self._by_key))]
        session_id = secrets.token_urlsafe(32)
        session = self._by_key[_key(session_id)] = Session(token, secrets.token_urlsafe(32), now + self._ttl_s)
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        key = _key(session_id)
        session = self._by_key.get(key)
        if session is not None and session.expires_at <= time.monotonic():
            del self._by_key[key]
            return None
        return session

    def drop(self, session_id: str | None) -> None:
        if session_id:
            self._by_key.pop(_key(session_id), None)
