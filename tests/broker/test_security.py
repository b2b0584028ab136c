"""TLS, mTLS and bearer tokens against the real broker, over every RPC kind."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
from pathlib import Path
from typing import TypedDict, Unpack

import grpc
import pytest

from tests.certs import CertificateAuthority
from tests.harness import ROOT, BrokerProcess, gather, wait_for
from tidelog import AdminClient, Consumer, Producer
from tidelog.errors import PermissionDeniedError, TidelogError, UnauthenticatedError, UnavailableError


class Security(TypedDict, total=False):
    """The security settings every client takes as keyword arguments."""

    tls_ca_file: str
    tls_cert_file: str
    tls_key_file: str
    token: str


def token_line(principal: str, token: str) -> str:
    return f"{principal} {hashlib.sha256(token.encode()).hexdigest()}\n"


def round_trip(address: str, topic: str, **security: Unpack[Security]) -> list[bytes]:
    """Every RPC kind: unary (admin), bidi (ProduceStream), server-streaming (Subscribe)."""
    with AdminClient(address, **security) as admin:
        admin.create_topic(topic)
    with Producer(address, **security) as producer:
        producer.send(topic, b"hello", partition=0).result(10)
    with Consumer(address, topics=[topic], auto_offset_reset="earliest", **security) as consumer:
        got: list[bytes] = []
        wait_for(lambda: gather(got, (m.value for m in consumer.poll(0.1))) > 0, what="the record back")
    return got


def test_tls_and_mtls(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    server_cert, server_key = ca.issue("127.0.0.1", server=True)
    client_cert, client_key = ca.issue("alice")
    stranger = CertificateAuthority(tmp_path, "another-ca")
    foreign_cert, foreign_key = stranger.issue("mallory")

    tls = BrokerProcess(
        tmp_path / "tls", "--tls-cert", str(server_cert), "--tls-key", str(server_key), "--retention-ms", "-1"
    )
    with pytest.raises(grpc.RpcError):  # the test harness itself speaks plaintext: it cannot get in
        tls.start(health_timeout=2)
    tls.kill()

    mtls = BrokerProcess(
        tmp_path / "mtls",
        "--tls-cert", str(server_cert), "--tls-key", str(server_key), "--tls-client-ca", str(ca.pem),
        "--retention-ms", "-1",
    )  # fmt: skip
    with pytest.raises(grpc.RpcError):
        mtls.start(health_timeout=2)
    address = mtls.address
    try:
        good: Security = {
            "tls_ca_file": str(ca.pem),
            "tls_cert_file": str(client_cert),
            "tls_key_file": str(client_key),
        }
        assert round_trip(address, "secure", **good) == [b"hello"]
        bads: tuple[Security, ...] = (
            {"tls_ca_file": str(ca.pem)},  # no client certificate
            {"tls_ca_file": str(ca.pem), "tls_cert_file": str(foreign_cert), "tls_key_file": str(foreign_key)},
            {},  # plaintext
        )
        for bad in bads:
            with AdminClient(address, timeout=3, **bad) as admin, pytest.raises(TidelogError) as refused:
                admin.list_topics()
            assert isinstance(refused.value, UnavailableError | TidelogError)
    finally:
        mtls.kill()


def test_plaintext_is_refused_off_loopback_unless_insecure(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tidelog", "serve", "--data-dir", str(tmp_path / "d"), "--listen", "0.0.0.0:0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "not a loopback address" in result.stderr and "--tls-cert" in result.stderr and "--insecure" in result.stderr


def test_plaintext_metrics_are_refused_off_loopback_unless_insecure(tmp_path: Path) -> None:
    serve = [sys.executable, "-m", "tidelog", "serve", "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0"]
    result = subprocess.run(
        [*serve, "--metrics-listen", "0.0.0.0:0"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert "refusing plaintext metrics on 0.0.0.0:0" in result.stderr and "--insecure" in result.stderr


def test_the_console_stays_on_loopback_unless_tls_and_tokens_are_on(tmp_path: Path) -> None:
    serve = [sys.executable, "-m", "tidelog", "serve", "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0"]
    tokens = tmp_path / "tokens"
    tokens.write_text("ops " + "0" * 64 + "\n")
    for extra in ((), ("--insecure",), ("--auth-tokens", str(tokens))):  # --insecure is no way around it
        result = subprocess.run(
            [*serve, "--console-listen", "0.0.0.0:0", *extra], cwd=ROOT, capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 1, extra
        assert "refusing the console on 0.0.0.0:0" in result.stderr and "--auth-tokens" in result.stderr, extra


def test_tokens_on_every_rpc_kind_and_reload_on_sighup(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# principal sha256(token)\n" + token_line("alice", "alice-secret"))
    broker = BrokerProcess(tmp_path / "data", "--auth-tokens", str(tokens), "--retention-ms", "-1").start()
    try:  # the harness's health check got in without a token: probes are open
        assert round_trip(broker.address, "authed", token="alice-secret") == [b"hello"]
        for token in (None, "wrong"):
            settings: Security = {"token": token} if token else {}
            with AdminClient(broker.address, **settings) as admin, pytest.raises(UnauthenticatedError) as refused:
                admin.list_topics()
            assert "token" in str(refused.value)
            with pytest.raises(UnauthenticatedError):  # GetMetadata, at the start
                Consumer(broker.address, topics=["authed"], auto_offset_reset="earliest", **settings)
            with (
                Consumer(broker.address, auto_offset_reset="earliest", **settings) as consumer,
                pytest.raises(UnauthenticatedError),
            ):
                consumer.assign([("authed", 0)])
                consumer.poll(5)  # Subscribe
            with (
                Producer(broker.address, delivery_timeout_ms=2000, **settings) as producer,
                pytest.raises(UnauthenticatedError),
            ):
                producer.send("authed", b"x", partition=0).result(10)  # ProduceStream

        tokens.write_text(token_line("alice", "alice-secret") + token_line("bob", "bob-secret"))
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGHUP)

        def bob_gets_in() -> bool:
            try:
                with AdminClient(broker.address, token="bob-secret") as admin:
                    admin.list_topics()
                return True
            except UnauthenticatedError:
                return False

        wait_for(bob_gets_in, what="the token reload that lets bob in")
    finally:
        broker.stop()


def test_the_principal_of_an_mtls_client_is_its_certificate_cn(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    server_cert, server_key = ca.issue("127.0.0.1", server=True)
    alice_cert, alice_key = ca.issue("alice")
    mallory_cert, mallory_key = ca.issue("mallory")
    alice: Security = {"tls_cert_file": str(alice_cert), "tls_key_file": str(alice_key)}
    mallory: Security = {"tls_cert_file": str(mallory_cert), "tls_key_file": str(mallory_key)}
    rules = tmp_path / "acls"
    rules.write_text("allow alice * cluster\n")
    broker = BrokerProcess(
        tmp_path / "data",
        "--tls-cert", str(server_cert), "--tls-key", str(server_key), "--tls-client-ca", str(ca.pem),
        "--acls", str(rules), "--retention-ms", "-1",
    )  # fmt: skip
    with pytest.raises(grpc.RpcError):  # the harness's plaintext health check cannot get in
        broker.start(health_timeout=2)
    try:
        with AdminClient(broker.address, tls_ca_file=str(ca.pem), **alice) as admin:
            admin.create_topic("certified")
        with (
            AdminClient(broker.address, tls_ca_file=str(ca.pem), **mallory) as admin,
            pytest.raises(PermissionDeniedError) as refused,
        ):
            admin.describe_topic("certified")
        assert "'mallory'" in str(refused.value)
    finally:
        broker.kill()
