"""The web console in a real browser: Playwright driving Debian's chromium against a real broker.

Every wait is on something the page shows (Playwright's expect() polls the page until it holds or
its deadline passes), never a sleep. Screenshots of each page go to the test's temp dir; with
TIDELOG_CONSOLE_SCREENSHOTS=DIR they are also written there (how docs/console/ was made).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.harness import BrokerProcess, logged
from tidelog import AdminClient, Consumer, Producer
from tidelog.testing import ClusterProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DEADLINE_MS = 30_000
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is installed by `make test`")


def console_url(broker: BrokerProcess) -> str:
    """The console's address, from the broker's log (it listens on a port the kernel picked)."""
    return logged(broker, "console_serving", "url")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(DEADLINE_MS)
    opened = context.new_page()
    yield opened
    context.close()


def shoot(page: Page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    wanted = os.environ.get("TIDELOG_CONSOLE_SCREENSHOTS")
    if wanted:
        Path(wanted).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(wanted) / f"{name}.png"), full_page=True)


def test_topics_tail_configs_and_groups(tmp_path: Path, page: Page) -> None:
    broker = BrokerProcess(tmp_path / "data", "--console-listen", "127.0.0.1:0", "--retention-ms", "-1").start()
    try:
        url = console_url(broker)
        page.goto(url)
        expect(page.locator("#broker-health")).to_have_text("SERVING")

        # Create a topic from the page; a bad name is refused with the broker's words.
        page.fill("#create-topic-name", "bad name!")
        page.click("#create-topic button")
        expect(page.locator(".message.error")).to_contain_text("name")
        page.fill("#create-topic-name", "orders")
        page.fill("#create-topic-partitions", "2")
        page.click("#create-topic button")
        expect(page.locator('#topics-table tr[data-topic="orders"]')).to_be_visible()
        shoot(page, tmp_path, "overview")

        page.click('#topics-table a:text-is("orders")')
        expect(page.locator("#partitions-table tbody tr")).to_have_count(2)

        # Edit a config: a bad value shows the broker's message, a good one lands in the table.
        page.fill("#config-name", "retention.ms")
        page.fill("#config-value", "soon")
        page.click("#config-form button")
        expect(page.locator("#config-status .message.error")).to_contain_text("retention.ms")
        page.fill("#config-value", "3600000")
        page.click("#config-form button")
        expect(page.locator('#configs-table tr[data-config="retention.ms"] td').nth(1)).to_have_text("3600000")
        expect(page.locator("#cleanup")).to_contain_text("after 3,600,000 ms")
        expect(page.locator("#topic-chart")).to_be_visible()

        # Produce a test record from the page.
        page.fill("#produce-key", "k1")
        page.fill("#produce-value", '{"order": 1}')
        page.fill("#produce-partition", "0")
        page.click("#produce-form button")
        expect(page.locator("#produce-status")).to_contain_text("partition 0 at offset 0")
        shoot(page, tmp_path, "topic")

        # The live tail from the beginning: the page's record, then records as they are written.
        page.click("#open-tail")
        page.select_option("#tail-start", "earliest")
        page.click("#tail-form button")
        expect(page.locator("#tail-status")).to_have_text("live")
        first = page.locator('#tail-rows tr[data-partition="0"][data-offset="0"]')
        expect(first.locator("td.value pre")).to_have_class(re.compile("kind-json"))
        expect(first.locator("td.key")).to_have_text("k1")
        with Producer(broker.address) as producer:
            producer.send("orders", b"\xff\x00\x01", partition=1)  # binary: shown as hex
            producer.send("orders", b"x" * 10_000 + b"-end", partition=1)  # huge: cut, with "show all"
            producer.flush()
        expect(page.locator('#tail-rows tr[data-partition="1"][data-offset="0"] td.value')).to_have_text("ff 00 01")
        huge = page.locator('#tail-rows tr[data-partition="1"][data-offset="1"] td.value')
        expect(huge.locator("a.show-all")).to_be_visible()
        shoot(page, tmp_path, "tail")
        huge.locator("a.show-all").click()
        expect(huge).to_contain_text("-end")

        # A filter shows only what matches.
        page.fill("#tail-contains", "needle")
        page.click("#tail-form button")
        expect(page.locator("#tail-status")).to_have_text("live")
        with Producer(broker.address) as producer:
            producer.send("orders", b"hay", partition=0)
            producer.send("orders", b"a needle here", partition=0)
            producer.flush()
        expect(page.locator("#tail-rows tr")).to_have_count(1)
        expect(page.locator("#tail-rows tr td.value")).to_have_text("a needle here")

        group_lag_falls(page, tmp_path, broker, url)
    finally:
        broker.stop()


def group_lag_falls(page: Page, tmp_path: Path, broker: BrokerProcess, url: str) -> None:
    """A group's lag on its page falls as a consumer reads and commits; a reset is refused while it has members."""
    with Producer(broker.address) as producer:
        producer.send_many("orders", [b"r"] * 200, partition=1)
        producer.flush()
    with AdminClient(broker.address) as admin:
        admin.reset_group_offsets("billing", "orders", position="earliest")
    page.goto(f"{url}#/group/billing")
    lag = page.locator("#group-lag")
    expect(lag).not_to_have_text("0")
    behind = int(lag.inner_text())
    assert behind >= 200
    with Consumer(
        broker.address, topics=["orders"], group="billing", auto_offset_reset="earliest", enable_auto_commit=False
    ) as consumer:
        read = 0
        while read < behind:  # until the consumer has read everything the page said was behind
            read += len(consumer.poll(1.0))
        consumer.commit()
        expect(page.locator("#group-state")).not_to_have_text("empty")
        page.fill("#reset-topic", "orders")
        page.click("#reset-form button")
        expect(page.locator("#reset-status .message.error")).to_contain_text("member")
        expect(lag).to_have_text("0")
        expect(page.locator("#group-lag-chart")).to_be_visible()
        shoot(page, tmp_path, "group")
    page.goto(f"{url}#/groups")
    expect(page.locator('#groups-table tr[data-group="billing"]')).to_be_visible()


def test_a_token_protected_console(tmp_path: Path, page: Page) -> None:
    tokens, rules = tmp_path / "tokens", tmp_path / "acls"
    tokens.write_text(
        "".join(f"{who} {hashlib.sha256(f'{who}-secret'.encode()).hexdigest()}\n" for who in ("ops", "viewer"))
    )
    rules.write_text("allow ops * cluster\nallow ops * topic:*\nallow viewer describe topic:public-*\n")
    broker = BrokerProcess(
        tmp_path / "data",
        *("--console-listen", "127.0.0.1:0", "--auth-tokens", str(tokens), "--acls", str(rules)),
    ).start()
    try:
        with AdminClient(broker.address, token="ops-secret") as admin:
            admin.create_topic("public-a")
            admin.create_topic("secret-b")
        url = console_url(broker)
        with pytest.raises(urllib.error.HTTPError) as refused:  # no session: the API answers nothing
            urllib.request.urlopen(f"{url}api/overview", timeout=10)
        assert refused.value.code == 401
        page.goto(url)
        expect(page.locator("#login-form")).to_be_visible()
        page.fill("#login-token", "wrong")
        page.click("#login-form button")
        expect(page.locator(".message.error")).to_contain_text("does not know that token")
        page.fill("#login-token", "ops-secret")
        page.click("#login-form button")
        expect(page.locator("#broker-health")).to_have_text("SERVING")
        expect(page.locator("#topics-table tbody tr")).to_have_count(2)
        assert "ops-secret" not in page.url
        stored = page.evaluate("() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])")
        assert "ops-secret" not in stored
        (cookie,) = page.context.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and "ops-secret" not in cookie["value"]
        # A write without the page's CSRF token is refused, even with the session cookie.
        forged = page.evaluate(
            """async () => (await fetch('/api/topics', {method: 'POST', headers: {'Content-Type': 'application/json'},
                body: JSON.stringify({name: 'forged'})})).status"""
        )
        assert forged == 403
        page.goto(f"{url}#/acls")
        expect(page.locator("#acls-table tbody tr")).to_have_count(3)
        page.click("#logout")
        expect(page.locator("#login-form")).to_be_visible()

        # Another viewer sees what their token may see, and nothing says whether the rest exists.
        page.fill("#login-token", "viewer-secret")
        page.click("#login-form button")
        expect(page.locator(".message.error")).to_contain_text("may not describe")
        page.fill("#open-topic-name", "public-a")
        page.click("#open-topic button")
        expect(page.locator("#partitions-table tbody tr")).to_have_count(1)
        refusals = []
        for name in ("secret-b", "no-such-topic"):
            page.goto(f"{url}#/topic/{name}")
            refusal = page.locator(".message.error")
            expect(refusal).to_contain_text(name)
            refusals.append(refusal.inner_text().replace(name, "T"))
        assert refusals[0] == refusals[1]
        shoot(page, tmp_path, "refused")
    finally:
        broker.stop()


def test_the_cluster_page_and_a_replicated_topic(tmp_path: Path, page: Page) -> None:
    if shutil.which("etcd") is None:
        pytest.skip("etcd is installed by `make test` (Debian's etcd-server)")
    cluster = ClusterProcess(tmp_path / "c", 3, broker_args={0: ("--console-listen", "127.0.0.1:0")}).start()
    try:
        with AdminClient(cluster.bootstrap) as admin:
            admin.create_topic("replicated", partitions=2, replication_factor=3)
        url = console_url(cluster.brokers[0])
        page.goto(f"{url}#/cluster")
        expect(page.locator("#brokers-table tbody tr")).to_have_count(3)
        expect(page.locator("#controller")).not_to_have_text("-1")
        shoot(page, tmp_path, "cluster")
        page.goto(f"{url}#/topic/replicated")
        rows = page.locator("#partitions-table tbody tr")
        expect(rows).to_have_count(2)
        for row in range(2):  # each partition: a leader, three replicas, all in sync
            cells = rows.nth(row).locator("td")
            expect(cells.nth(5)).to_have_text(re.compile(r"^[012]$"))
            expect(cells.nth(6)).to_have_text(re.compile(r"^\d, \d, \d$"))
            expect(cells.nth(7)).to_have_text(re.compile(r"^\d, \d, \d$"))
    finally:
        cluster.stop()
