"""The console's JSON API: each endpoint one or a few calls to the broker's gRPC services, as the viewer.

Nothing here reads the broker's state directly except the charts' history, and that is filtered by
what the viewer's token may list. Every refusal of the broker comes back as {"error": message} with
an HTTP status to match; bad input is answered before anything is called.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tidelog.broker.batches import records_of
from tidelog.broker.console.gateway import CallFailed, Gateway
from tidelog.broker.console.history import History
from tidelog.broker.console.render import FULL_BYTES, show_record
from tidelog.broker.console.sessions import Session
from tidelog.broker.console.tail import TailRequest, tail_events
from tidelog.v1 import admin_pb2, broker_pb2, groups_pb2, records_pb2

SESSION_KEY = web.RequestKey("session", Session)
MAX_TEXT_CHARS = 1 << 20  # a key, value or config typed into a form

_HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "FAILED_PRECONDITION": 409,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


class BadInput(Exception):
    """A form's value the console refuses before calling the broker."""


def failure(err: CallFailed | BadInput) -> web.Response:
    if isinstance(err, BadInput):
        return web.json_response({"error": str(err)}, status=400)
    return web.json_response({"error": err.message, "reason": err.reason}, status=_HTTP_STATUS.get(err.code, 502))


def as_dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise BadInput("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadInput("the request body must be a JSON object")
    return body


def _required(body: dict[str, Any], name: str) -> str:
    value = _text(body, name)
    if value is None:
        raise BadInput(f"{name} is required")
    return value


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadInput(f"{name} must be text")
    if len(value) > MAX_TEXT_CHARS:
        raise BadInput(f"{name} is longer than {MAX_TEXT_CHARS} characters")
    return value


def _int(value: Any, name: str, *, low: int = 0, high: int = (1 << 63) - 1) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadInput(f"{name} must be a whole number, not {str(value)[:40]!r}") from None
    if not low <= number <= high:
        raise BadInput(f"{name} must be between {low} and {high}")
    return number


class Api:
    def __init__(self, gateway: Gateway, history: History, *, clustered: bool) -> None:
        self._gateway = gateway
        self._history = history
        self._clustered = clustered

    def routes(self) -> list[web.RouteDef]:
        def get(path: str, fn: Callable[[web.Request, Session], Awaitable[web.StreamResponse]]) -> web.RouteDef:
            return web.get(path, self._guarded(fn))

        def post(path: str, fn: Callable[[web.Request, Session], Awaitable[web.StreamResponse]]) -> web.RouteDef:
            return web.post(path, self._guarded(fn))

        return [
            get("/api/overview", self.overview),
            post("/api/topics", self.create_topic),
            get("/api/topics/{name}", self.topic),
            post("/api/topics/{name}/configs", self.alter_configs),
            post("/api/topics/{name}/records", self.produce),
            get("/api/topics/{name}/records/{partition}/{offset}", self.record),
            get("/api/topics/{name}/tail", self.tail),
            get("/api/groups", self.groups),
            get("/api/groups/{name}", self.group),
            post("/api/groups/{name}/reset", self.reset_offsets),
            get("/api/acls", self.acls),
            get("/api/cluster", self.cluster),
        ]

    def _guarded(
        self, fn: Callable[[web.Request, Session], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                return await fn(request, request[SESSION_KEY])
            except (CallFailed, BadInput) as err:
                return failure(err)

        return handle

    async def _call(self, session: Session, rpc: Callable[..., Awaitable[Any]], message: Any) -> Any:
        return await self._gateway.call(rpc, message, session.token)

    # -- topics --------------------------------------------------------------------

    async def overview(self, request: web.Request, session: Session) -> web.Response:
        listed = await self._call(session, self._gateway.admin.ListTopics, admin_pb2.ListTopicsRequest())
        names = [t.name for t in listed.topics]
        describe = self._gateway.admin.DescribeTopic
        described = await asyncio.gather(
            *(self._call(session, describe, admin_pb2.DescribeTopicRequest(name=n)) for n in names),
            return_exceptions=True,
        )
        rates = self._history.topic_rates(set(names))
        topics = []
        for name, topic in zip(names, described, strict=True):
            latest = rates[name][-1] if rates[name] else (0.0, 0.0, 0.0)
            entry: dict[str, Any] = {"name": name, "rate_in": latest[1], "rate_out": latest[2], "series": rates[name]}
            if isinstance(topic, BaseException):
                entry["error"] = str(topic)
            else:
                entry["partitions"] = len(topic.partitions)
                entry["records"] = sum(p.high_watermark - p.log_start_offset for p in topic.partitions)
                entry["size_bytes"] = sum(p.size_bytes for p in topic.partitions)
            topics.append(entry)
        return web.json_response({"topics": topics, "broker": await self._broker_health()})

    async def _broker_health(self) -> dict[str, Any]:
        stub = health_pb2_grpc.HealthStub(self._gateway.channel)
        try:
            answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
        except Exception as err:  # the broker is stopping: say so rather than fail the page
            status = f"unreachable ({type(err).__name__})"
        return {"health": status, "clustered": self._clustered}

    async def topic(self, request: web.Request, session: Session) -> web.Response:
        name = request.match_info["name"]
        described = await self._call(
            session, self._gateway.admin.DescribeTopic, admin_pb2.DescribeTopicRequest(name=name)
        )
        answer = as_dict(described)
        answer["clustered"] = self._clustered
        answer["series"] = self._history.topic_rates({name})[name]
        return web.json_response(answer)

    async def create_topic(self, request: web.Request, session: Session) -> web.Response:
        body = await json_body(request)
        name = _required(body, "name")
        create = admin_pb2.CreateTopicRequest(name=name, configs=self._configs(body.get("configs") or {}))
        if body.get("partitions") not in (None, ""):
            create.partitions = _int(body["partitions"], "partitions", low=1, high=100_000)
        created = await self._call(session, self._gateway.admin.CreateTopic, create)
        return web.json_response(as_dict(created), status=201)

    @staticmethod
    def _configs(raw: Any) -> dict[str, str]:
        if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
            raise BadInput("configs must map names to text values")
        return raw

    async def alter_configs(self, request: web.Request, session: Session) -> web.Response:
        body = await json_body(request)
        configs = self._configs(body.get("configs"))
        if not configs:
            raise BadInput("give at least one config to change")
        alter = admin_pb2.AlterTopicConfigsRequest(name=request.match_info["name"], configs=configs)
        return web.json_response(as_dict(await self._call(session, self._gateway.admin.AlterTopicConfigs, alter)))

    async def produce(self, request: web.Request, session: Session) -> web.Response:
        body = await json_body(request)
        value = _text(body, "value")
        key = _text(body, "key")
        record = records_pb2.Record(key=key.encode() if key else b"", value=(value or "").encode())
        for header in body.get("headers") or []:
            if not isinstance(header, dict):
                raise BadInput("each header needs a key and a value")
            header_key = _required(header, "key")
            record.headers.add(key=header_key, value=(_text(header, "value") or "").encode())
        produce = broker_pb2.ProduceRequest(topic=request.match_info["name"], records=[record])
        if body.get("partition") not in (None, ""):
            produce.partition = _int(body["partition"], "partition", high=(1 << 31) - 1)
        answer = await self._call(session, self._gateway.broker.Produce, produce)
        result = answer.results[0]
        return web.json_response({"partition": result.partition, "offset": result.base_offset}, status=201)

    async def record(self, request: web.Request, session: Session) -> web.Response:
        """One record whole (up to FULL_BYTES of each part): a tail's "show all"."""
        name = request.match_info["name"]
        partition = _int(request.match_info["partition"], "partition", high=(1 << 31) - 1)
        offset = _int(request.match_info["offset"], "offset")
        fetch = broker_pb2.FetchRequest(topic=name, partition=partition, offset=offset, max_records=1)
        answer = await self._call(session, self._gateway.broker.Fetch, fetch)
        for batch in answer.batches:
            records = records_of(batch)
            if batch.base_offset <= offset < batch.base_offset + len(records):
                record = records[offset - batch.base_offset]
                return web.json_response(show_record(name, partition, offset, record, batch.append_time_ms, FULL_BYTES))
        raise BadInput(f"no record at offset {offset} of {name}/{partition} (removed by retention or compaction?)")

    async def tail(self, request: web.Request, session: Session) -> web.StreamResponse:
        name = request.match_info["name"]
        query = request.query
        described = await self._call(
            session, self._gateway.admin.DescribeTopic, admin_pb2.DescribeTopicRequest(name=name)
        )
        partitions = [p.partition for p in described.partitions]
        if query.get("partition", "") != "":
            chosen = _int(query["partition"], "partition", high=(1 << 31) - 1)
            if chosen not in partitions:
                raise BadInput(f"{name} has partitions 0-{len(partitions) - 1}, not {chosen}")
            partitions = [chosen]
        start = broker_pb2.PartitionStart()
        where = query.get("start", "latest")
        if where == "earliest":
            start.position = records_pb2.POSITION_EARLIEST
        elif where == "offset":
            start.offset = _int(query.get("at"), "offset")
        elif where == "time":
            start.timestamp_ms = _int(query.get("at"), "time (milliseconds since the epoch)")
        elif where != "latest":
            raise BadInput("start must be latest, earliest, offset or time")
        key, contains = query.get("key") or None, query.get("contains") or None
        tail = TailRequest(
            name, partitions, start, key.encode() if key else None, contains.encode() if contains else None
        )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        events = tail_events(self._gateway, session.token, tail)
        try:
            async for chunk in events:
                await response.write(chunk)
        except ConnectionResetError:
            pass  # the page went away (found at the next record or heartbeat)
        finally:
            await events.aclose()  # ends the Subscribe stream now, not when the generator is collected
        return response

    # -- groups, ACLs, the cluster --------------------------------------------------

    async def groups(self, request: web.Request, session: Session) -> web.Response:
        listed = await self._call(session, self._gateway.groups.ListGroups, groups_pb2.ListGroupsRequest())
        names = {g.name for g in listed.groups}
        lag = self._history.group_lag(names)
        return web.json_response({"groups": [{**as_dict(g), "lag_series": lag[g.name]} for g in listed.groups]})

    async def group(self, request: web.Request, session: Session) -> web.Response:
        name = request.match_info["name"]
        described = await self._call(
            session, self._gateway.groups.DescribeGroup, groups_pb2.DescribeGroupRequest(group=name)
        )
        answer = as_dict(described)
        answer["lag_series"] = self._history.group_lag({name})[name]
        return web.json_response(answer)

    async def reset_offsets(self, request: web.Request, session: Session) -> web.Response:
        body = await json_body(request)
        reset = groups_pb2.ResetOffsetsRequest(group=request.match_info["name"], topic=_required(body, "topic"))
        to = body.get("to")
        if to == "earliest":
            reset.position = records_pb2.POSITION_EARLIEST
        elif to == "latest":
            reset.position = records_pb2.POSITION_LATEST
        elif to == "offset":
            reset.offset = _int(body.get("value"), "offset")
        elif to == "time":
            reset.timestamp_ms = _int(body.get("value"), "time (milliseconds since the epoch)")
        else:
            raise BadInput("to must be earliest, latest, offset or time")
        answer = await self._call(session, self._gateway.groups.ResetOffsets, reset)
        return web.json_response(as_dict(answer))

    async def acls(self, request: web.Request, session: Session) -> web.Response:
        listed = await self._call(session, self._gateway.admin.ListAcls, admin_pb2.ListAclsRequest())
        return web.json_response(as_dict(listed))

    async def cluster(self, request: web.Request, session: Session) -> web.Response:
        described = await self._call(session, self._gateway.admin.DescribeCluster, admin_pb2.DescribeClusterRequest())
        answer = as_dict(described)
        answer["clustered"] = self._clustered
        return web.json_response(answer)
