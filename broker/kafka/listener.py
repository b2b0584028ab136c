"""The Kafka wire-protocol listener (`--kafka-listen`): length-prefixed frames over TCP, on the loop.

Each connection is read frame by frame and answered in order (Kafka clients pipeline requests and
match answers by order and correlation id). A frame that cannot be decoded, is larger than
MAX_FRAME_BYTES or asks for an API this broker does not speak closes that connection only.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import structlog

from tidelog.broker.kafka.apis import KafkaApis, Refused
from tidelog.broker.kafka.caller import Session
from tidelog.broker.kafka.wire import MalformedFrame
from tidelog.broker.security import acls

log = structlog.get_logger("tidelog.kafka")

MAX_FRAME_BYTES = 100 << 20  # Kafka's socket.request.max.bytes default
_MIN_FRAME_BYTES = 10  # api key, api version, correlation id, client id length


class KafkaListener:
    """`await bind()` takes the port (its address says what Metadata may hand out); `await serve(apis)`
    then accepts connections, so none is ever answered before the answers know where they are."""

    def __init__(self, listen: str, tls: ssl.SSLContext | None = None) -> None:
        self._listen = listen
        self._tls = tls
        self._apis: KafkaApis | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.address = ""

    async def bind(self) -> str:
        host, port = self._listen.rsplit(":", 1)
        self._server = await asyncio.start_server(
            self._serve, host.strip("[]"), int(port), ssl=self._tls, start_serving=False
        )
        self.address = f"{host}:{self._server.sockets[0].getsockname()[1]}"
        return self.address

    async def serve(self, apis: KafkaApis) -> None:
        assert self._server is not None, "bind() first"
        self._apis = apis
        await self._server.start_serving()
        log.info("kafka_serving", listen=self.address)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task, apis = asyncio.current_task(), self._apis
        assert task is not None and apis is not None
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        session = Session(str(peer[0]) if isinstance(peer, tuple) else "")
        certificate_name = _common_name(writer.get_extra_info("peercert"))
        if certificate_name is not None:  # mTLS: the certificate's CN is the principal (as for gRPC)
            session.principal, session.authenticated = certificate_name, True
            acls.current_principal.set(certificate_name)
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(4), "big", signed=True)
                if not _MIN_FRAME_BYTES <= size <= MAX_FRAME_BYTES:
                    log.warning("kafka_frame_refused", peer=str(peer), size=size, max=MAX_FRAME_BYTES)
                    return
                answer = await apis.handle(await reader.readexactly(size), session)
                if answer is not None:
                    writer.write(len(answer).to_bytes(4, "big") + answer)
                    await writer.drain()
                if session.close:
                    return
                if session.mute_s > 0:  # over quota: the connection is muted, as Kafka's is (KIP-219)
                    await asyncio.sleep(session.mute_s)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            return  # the client went away, mid-frame or between frames
        except (MalformedFrame, Refused) as err:
            log.warning("kafka_request_refused", peer=str(peer), error=str(err))
        except Exception:  # a bug answering: this connection ends, the broker and the others go on
            log.exception("kafka_request_failed", peer=str(peer))
        finally:
            self._connections.discard(task)
            writer.close()


def _common_name(certificate: dict[str, Any] | None) -> str | None:
    """A verified client certificate's subject CN (ssl's getpeercert() form)."""
    for rdn in (certificate or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
