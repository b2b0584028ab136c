"""The web console's server: aiohttp on the broker's event loop, the page and its JSON API.

Served from inside the broker, so it is there on the embedded default with nothing else to run. The
page is plain HTML, CSS and JavaScript shipped in the package (no CDN: it works offline). Every
request is checked before it reaches the API: the Host header (a DNS-rebinding page cannot borrow a
loopback console), the session, and for writes the session's CSRF token and a JSON body.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path

import structlog
from aiohttp import web

from tidelog.broker.console.api import SESSION_KEY, Api, BadInput, json_body
from tidelog.broker.console.gateway import CallFailed, Gateway
from tidelog.broker.console.history import History
from tidelog.broker.console.sessions import COOKIE, Session, Sessions
from tidelog.v1 import admin_pb2

log = structlog.get_logger("tidelog.console")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_STATIC = resources.files("tidelog.broker.console") / "static"
_STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class Console:
    """`await start()` serves the console on `listen`; `await stop()` closes it."""

    def __init__(
        self,
        listen: str,
        gateway: Gateway,
        history: History,
        *,
        auth_required: bool,
        clustered: bool,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self._listen = listen
        self._gateway = gateway
        self._history = history
        self._auth_required = auth_required
        self._tls = tls
        self._sessions = Sessions()
        self._api = Api(gateway, history, clustered=clustered)
        self._runner: web.AppRunner | None = None
        self.address = ""

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=2 << 20)
        app.add_routes(
            [
                web.get("/", self._page),
                web.get("/static/{file}", self._static),
                web.get("/api/session", self._session_state),
                web.post("/api/login", self._login),
                web.post("/api/logout", self._logout),
                *self._api.routes(),
            ]
        )
        return app

    async def start(self) -> str:
        host, port = self._listen.rsplit(":", 1)
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        context = None
        if self._tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self._tls[0]), str(self._tls[1]))
        site = web.TCPSite(self._runner, host.strip("[]"), int(port), ssl_context=context)
        await site.start()
        self.address = f"{host}:{self._runner.addresses[0][1]}"  # the port bound, for ":0"
        self._history.start()
        log.info("console_serving", url=self.url)
        return self.address

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://{self.address}/"

    async def stop(self) -> None:
        await self._history.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        await self._gateway.close()

    # -- every request ---------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.host != self.address and request.host not in self._loopback_names():
            return web.json_response({"error": f"this console answers as {self.address}"}, status=421)
        path = request.path
        if path.startswith("/api/") and path not in ("/api/session", "/api/login"):
            session = self._sessions.get(request.cookies.get(COOKIE))
            if session is None:
                return web.json_response({"error": "sign in: the console needs a session"}, status=401)
            if request.method != "GET":
                if request.content_type != "application/json":
                    return web.json_response({"error": "send JSON (Content-Type: application/json)"}, status=415)
                if not session.csrf_ok(request.headers.get("X-CSRF-Token")):
                    refused = {"error": "the CSRF token is missing or wrong: reload the page"}
                    return web.json_response(refused, status=403)
            request[SESSION_KEY] = session
        try:
            response = await handler(request)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("console_request_failed", path=path)
            failed = {"error": "the console failed on this request (see the broker log)"}
            response = web.json_response(failed, status=500)
        if not response.prepared:
            response.headers.update(_HEADERS)
            if path.startswith("/api/"):
                response.headers["Cache-Control"] = "no-store"
        return response

    def _loopback_names(self) -> tuple[str, ...]:
        port = self.address.rsplit(":", 1)[1]
        return (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}")

    # -- the page --------------------------------------------------------------------

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(body=(_STATIC / "index.html").read_bytes(), content_type="text/html")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["file"]
        suffix = Path(name).suffix
        if "/" in name or name.startswith(".") or suffix not in _STATIC_TYPES:
            raise web.HTTPNotFound()
        entry = _STATIC / name
        if not entry.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=entry.read_bytes(), content_type=_STATIC_TYPES[suffix])

    # -- signing in ------------------------------------------------------------------

    def _current(self, request: web.Request) -> Session | None:
        return self._sessions.get(request.cookies.get(COOKIE))

    def _set_cookie(self, response: web.Response, session_id: str) -> None:
        response.set_cookie(
            COOKIE, session_id, httponly=True, samesite="Strict", secure=self._tls is not None, path="/"
        )

    async def _session_state(self, request: web.Request) -> web.Response:
        """Whether a token is needed and whether this browser has a session; without tokens, one is opened."""
        session = self._current(request)
        if session is None and not self._auth_required:
            session_id, session = self._sessions.create(None)
            response = web.json_response({"auth_required": False, "signed_in": True, "csrf": session.csrf})
            self._set_cookie(response, session_id)
            return response
        return web.json_response(
            {
                "auth_required": self._auth_required,
                "signed_in": session is not None,
                "csrf": session.csrf if session is not None else None,
            }
        )

    async def _login(self, request: web.Request) -> web.Response:
        try:
            token = (await json_body(request)).get("token")
        except BadInput:
            token = None
        if not isinstance(token, str) or not token.strip() or len(token) > 4096:
            return web.json_response({"error": "give your Tidelog token"}, status=400)
        token = token.strip()
        try:  # any call judges the token: a refusal for want of rights still means it is valid
            await self._gateway.call(self._gateway.admin.ListTopics, admin_pb2.ListTopicsRequest(), token)
        except CallFailed as err:
            if err.code == "UNAUTHENTICATED":
                return web.json_response({"error": "the broker does not know that token"}, status=401)
            if err.code != "PERMISSION_DENIED":
                return web.json_response({"error": f"the broker did not answer: {err}"}, status=503)
        old = request.cookies.get(COOKIE)
        self._sessions.drop(old)
        session_id, session = self._sessions.create(token)
        response = web.json_response({"auth_required": True, "signed_in": True, "csrf": session.csrf})
        self._set_cookie(response, session_id)
        return response

    async def _logout(self, request: web.Request) -> web.Response:
        """Reached through the guard, like every write: a session and its CSRF token are checked there."""
        self._sessions.drop(request.cookies.get(COOKIE))
        response = web.json_response({"signed_in": False})
        response.del_cookie(COOKIE, path="/")
        return response
