"""Security on the Kafka listener: SASL/PLAIN with Tidelog tokens (the principal, its ACLs and its
quotas, as over gRPC), connections that do not authenticate, SSL and mTLS."""

from __future__ import annotations

import hashlib
import signal
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.certs import CertificateAuthority
from tests.harness import BrokerProcess, logged, wait_for
from tests.kafka import raw
from tidelog import AdminClient
from tidelog.broker.kafka import messages, record_batch
from tidelog.broker.kafka.schema import Message
from tidelog.v1.records_pb2 import Record

RULES = """
allow ops * cluster
allow alice * topic:alice-*
allow alice consume group:alice-*
"""


def token_line(principal: str) -> str:
    return f"{principal} {hashlib.sha256(principal.encode()).hexdigest()}\n"  # each one's token is its name


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BrokerProcess, str]]:
    root = tmp_path_factory.mktemp("kafka-sasl")
    tokens, rules, quotas = root / "tokens", root / "acls", root / "quotas"
    tokens.write_text(token_line("ops") + token_line("alice") + token_line("slow"))
    rules.write_text(RULES + "allow slow * topic:*\n")
    quotas.write_text("slow 10000 -1\n")  # 10 kB/s of produce
    process = BrokerProcess(
        root / "data", "--kafka-listen", "127.0.0.1:0", "--auth-tokens", str(tokens), "--acls", str(rules),
        "--quotas", str(quotas),
    ).start()  # fmt: skip
    try:
        with AdminClient(process.address, token="ops") as ops:
            for name in ("alice-orders", "payroll"):
                ops.create_topic(name)
        yield process, logged(process, "kafka_serving", "listen")
    finally:
        process.stop()


def sasl(user: str, password: str) -> dict[str, str]:
    return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.username": user,
            "sasl.password": password}  # fmt: skip


def delivery_errors(address: str, topic: str, config: dict[str, str]) -> list[Any]:
    import confluent_kafka

    producer = confluent_kafka.Producer({"bootstrap.servers": address, "message.timeout.ms": 20_000, **config})
    outcomes: list[Any] = []
    producer.produce(topic, b"v", on_delivery=lambda error, _: outcomes.append(error))
    producer.flush(30)
    assert len(outcomes) == 1
    return outcomes


def test_a_token_is_a_kafka_principal_with_its_acls(secured: tuple[BrokerProcess, str]) -> None:
    import confluent_kafka
    import confluent_kafka.admin
    import kafka

    _, address = secured
    assert delivery_errors(address, "alice-orders", sasl("alice", "alice")) == [None]
    (refused,) = delivery_errors(address, "payroll", sasl("alice", "alice"))
    assert refused.code() == confluent_kafka.KafkaError.TOPIC_AUTHORIZATION_FAILED
    metadata = confluent_kafka.admin.AdminClient({"bootstrap.servers": address, **sasl("alice", "alice")})
    assert set(metadata.list_topics(timeout=20).topics) == {"alice-orders"}  # payroll is not hers to see

    consumer = kafka.KafkaConsumer(
        "alice-orders", bootstrap_servers=address, group_id="alice-readers", auto_offset_reset="earliest",
        security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_plain_username="alice",
        sasl_plain_password="alice", consumer_timeout_ms=30_000,
    )  # fmt: skip
    try:
        assert next(iter(consumer)).value == b"v"  # a group she may use, a topic she may read
    finally:
        consumer.close()
    outsider = kafka.KafkaConsumer(
        "alice-orders", bootstrap_servers=address, group_id="not-hers", security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN", sasl_plain_username="alice", sasl_plain_password="alice",
    )  # fmt: skip
    try:
        with pytest.raises(kafka.errors.GroupAuthorizationFailedError):
            outsider.poll(timeout_ms=30_000)
    finally:
        outsider.close()


@pytest.mark.parametrize(
    ("auth", "reason"),
    [(b"\0alice\0wrong", "an unknown token"), (b"\0bob\0alice", "alice's token, sent as 'bob'"), (b"alice", "not a")],
    ids=["bad-token", "not-hers", "not-plain"],
)
def test_a_bad_login_is_answered_then_closed(secured: tuple[BrokerProcess, str], auth: bytes, reason: str) -> None:
    process, address = secured
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        raw.send(conn, messages.SASL_HANDSHAKE_REQUEST, 1, {"mechanism": "PLAIN"})
        assert raw.decode_answer(messages.SASL_HANDSHAKE_RESPONSE, 1, raw.receive(conn))["mechanisms"] == ["PLAIN"]
        raw.send(conn, messages.SASL_AUTHENTICATE_REQUEST, 1, {"auth_bytes": auth}, 1)
        answer = raw.decode_answer(messages.SASL_AUTHENTICATE_RESPONSE, 1, raw.receive(conn))
        assert (answer["error_code"], answer["error_message"]) == (58, "authentication failed")  # nothing more said
        assert conn.recv(1) == b""  # and the connection is closed
    failures = [line for line in process.log().splitlines() if "kafka_authentication_failed" in line]
    assert reason in failures[-1]  # why is in the broker's log


def test_a_connection_must_authenticate_before_anything_else(secured: tuple[BrokerProcess, str]) -> None:
    _, address = secured
    versions = (messages.API_VERSIONS_REQUEST, 3, {"client_software_name": "t", "client_software_version": "1"})
    metadata = (messages.METADATA_REQUEST, 9, {"topics": None, "allow_auto_topic_creation": False})
    with pytest.raises(ConnectionError, match="closed"):  # ApiVersions is answered, then Metadata closes it
        raw.exchange(address, [versions, metadata], answered=[True, True])


def authenticated(address: str, user: str) -> socket.socket:
    """A raw connection through SaslHandshake and SaslAuthenticate."""
    host, port = address.rsplit(":", 1)
    conn = socket.create_connection((host, int(port)), timeout=30)
    steps: list[tuple[Message, int, dict[str, Any]]] = [
        (messages.SASL_HANDSHAKE_REQUEST, 1, {"mechanism": "PLAIN"}),
        (messages.SASL_AUTHENTICATE_REQUEST, 1, {"auth_bytes": f"\0{user}\0{user}".encode()}),
    ]
    for number, (message, version, body) in enumerate(steps):
        raw.send(conn, message, version, body, number)
        answer = raw.decode_answer(raw.response_of(message), version, raw.receive(conn))
        assert answer["error_code"] == 0, answer
    return conn


def test_quotas_come_back_as_throttle_time(secured: tuple[BrokerProcess, str]) -> None:
    _, address = secured
    batch = record_batch.encode([Record(value=b"x" * 30_000)], 0, 0, False)
    body = {"transactional_id": None, "acks": -1, "timeout_ms": 30_000,
            "topic_data": [{"name": "payroll", "partition_data": [{"index": 0, "records": batch}]}]}  # fmt: skip
    with authenticated(address, "slow") as conn:
        raw.send(conn, messages.PRODUCE_REQUEST, 8, body, 7)
        answer = raw.decode_answer(messages.PRODUCE_RESPONSE, 8, raw.receive(conn))
    assert answer["responses"][0]["partition_responses"][0]["error_code"] == 0
    # 30 kB against 10 kB/s with a second's burst: 2 s over, answered at once and reported.
    assert 1_500 <= answer["throttle_time_ms"] <= 2_100


def test_ssl_and_mtls(tmp_path: Path) -> None:
    import confluent_kafka.admin
    from confluent_kafka.cimpl import NewTopic

    ca = CertificateAuthority(tmp_path)
    server_cert, server_key = ca.issue("127.0.0.1", server=True)
    client_cert, client_key = ca.issue("alice")
    rules = tmp_path / "acls"
    rules.write_text(RULES)
    broker = BrokerProcess(
        tmp_path / "data", "--tls-cert", str(server_cert), "--tls-key", str(server_key), "--tls-client-ca",
        str(ca.pem), "--acls", str(rules), "--kafka-listen", "127.0.0.1:0",
    )  # fmt: skip
    with pytest.raises(grpc.RpcError):  # (the harness checks health in plaintext)
        broker.start(health_timeout=2)
    try:
        address = logged(broker, "kafka_serving", "listen")
        config: dict[str, str | int | float | bool] = {
            "bootstrap.servers": address,
            "security.protocol": "SSL",
            "ssl.ca.location": str(ca.pem),
            "ssl.certificate.location": str(client_cert),
            "ssl.key.location": str(client_key),
        }
        admin = confluent_kafka.admin.AdminClient(config)
        created = admin.create_topics([NewTopic("alice-tls", 1, 1)])
        created["alice-tls"].result(30)  # the certificate's CN is alice, whose topics these are
        refused = admin.create_topics([NewTopic("other", 1, 1)])
        with pytest.raises(confluent_kafka.KafkaException):
            refused["other"].result(30)
        tls_config = {k: str(v) for k, v in config.items() if k != "bootstrap.servers"}
        assert delivery_errors(address, "alice-tls", tls_config) == [None]
        host, port = address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as plain:  # no TLS: no answer
            plain.sendall(struct.pack(">i", 10) + bytes(10))
            assert plain.recv(100) in (b"", b"\x15\x03\x01\x00\x02\x02\x32")  # closed, or a TLS alert
    finally:
        broker.kill()


def test_a_revoked_token_ends_its_connections(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(token_line("alice") + token_line("bob"))
    process = BrokerProcess(tmp_path / "data", "--kafka-listen", "127.0.0.1:0", "--auth-tokens", str(tokens)).start()
    try:
        address = logged(process, "kafka_serving", "listen")
        metadata = (messages.METADATA_REQUEST, 9, {"topics": None, "allow_auto_topic_creation": False})
        with authenticated(address, "alice") as alice, authenticated(address, "bob") as bob:
            for conn in (alice, bob):
                raw.send(conn, *metadata, 2)
                raw.receive(conn)  # answered while the tokens stand
            tokens.write_text(token_line("bob"))  # alice's token is gone
            assert process.proc is not None
            process.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: process.log().count('"tokens_loaded"') >= 2, 30, what="the tokens reloaded")
            raw.send(bob, *metadata, 3)
            assert raw.decode_answer(messages.METADATA_RESPONSE, 9, raw.receive(bob))["brokers"]
            raw.send(alice, *metadata, 3)
            assert alice.recv(1) == b""  # closed, unanswered
    finally:
        process.stop()
