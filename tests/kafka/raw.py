"""A minimal Kafka client for the tests: one request over a socket, encoded and decoded with the
broker's generated message specs (which the real clients' tests check against the protocol)."""

from __future__ import annotations

import socket
import struct
from typing import Any

from tidelog.broker.kafka import messages
from tidelog.broker.kafka.schema import Message, decode, encode
from tidelog.broker.kafka.wire import Reader

CLIENT_ID = b"tidelog-tests"


def call(address: str, request: Message, response: Message, version: int, body: dict[str, Any]) -> dict[str, Any]:
    """Send one request and return its decoded answer."""
    answers = exchange(address, [(request, version, body)], answered=[True])
    return decode_answer(response, version, answers[0])


def exchange(address: str, requests: list[tuple[Message, int, dict[str, Any]]], answered: list[bool]) -> list[bytes]:
    """Send the requests on one connection (pipelined) and read the answers of those `answered`."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        for correlation_id, (message, version, body) in enumerate(requests):
            send(conn, message, version, body, correlation_id)
        return [receive(conn) for _ in range(sum(answered))]


def send(conn: socket.socket, message: Message, version: int, body: dict[str, Any], correlation_id: int = 0) -> None:
    header = struct.pack(">hhih", message.api_key, version, correlation_id, len(CLIENT_ID)) + CLIENT_ID
    if message.is_flexible(version):
        header += b"\x00"
    frame = header + encode(message, version, body)
    conn.sendall(struct.pack(">i", len(frame)) + frame)


def receive(conn: socket.socket) -> bytes:
    """One answer frame (its size read first)."""
    size = struct.unpack(">i", _read(conn, 4))[0]
    return _read(conn, size)


def response_of(request: Message) -> Message:
    return messages.APIS[request.api_key][1]


def decode_answer(response: Message, version: int, frame: bytes) -> dict[str, Any]:
    reader = Reader(frame)
    reader.int32()  # correlation id
    if response.is_flexible(version) and response.api_key != messages.API_VERSIONS_RESPONSE.api_key:
        reader.tagged_fields()  # (ApiVersions' header never has them, KIP-511)
    return decode(response, version, frame, reader.pos)


def _read(conn: socket.socket, size: int) -> bytes:
    chunks = b""
    while len(chunks) < size:
        chunk = conn.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError(f"the broker closed the connection with {size - len(chunks)} bytes to come")
        chunks += chunk
    return chunks
