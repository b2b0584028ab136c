"""Error reasons: what the broker puts in a status's google.rpc.ErrorInfo, and the gRPC code it goes with.

The broker raises by reason; clients branch on it (the SDK maps each to an exception class). The
values are the names, as they travel on the wire; a Reason compares equal to its name.
"""

from __future__ import annotations

from enum import StrEnum

import grpc

ERROR_DOMAIN = "tidelog"

_C = grpc.StatusCode


class Reason(StrEnum):
    code: grpc.StatusCode
    summary: str

    def __new__(cls, name: str, code: grpc.StatusCode, summary: str) -> Reason:
        reason = str.__new__(cls, name)
        reason._value_ = name
        reason.code = code
        reason.summary = summary
        return reason

    TOPIC_NOT_FOUND = ("TOPIC_NOT_FOUND", _C.NOT_FOUND, "no such topic")
    TOPIC_EXISTS = ("TOPIC_EXISTS", _C.ALREADY_EXISTS, "a topic of that name exists")
    INVALID_NAME = ("INVALID_NAME", _C.INVALID_ARGUMENT, "a topic or group name breaks the naming rule")
    INVALID_PARTITIONS = ("INVALID_PARTITIONS", _C.INVALID_ARGUMENT, "a partition count out of bounds")
    PARTITION_OUT_OF_RANGE = ("PARTITION_OUT_OF_RANGE", _C.INVALID_ARGUMENT, "no such partition in the topic")
    RECORD_TOO_LARGE = ("RECORD_TOO_LARGE", _C.INVALID_ARGUMENT, "a record above max.message.bytes")
    EMPTY_RECORDS = ("EMPTY_RECORDS", _C.INVALID_ARGUMENT, "a produce request with no record")
    KEY_REQUIRED = ("KEY_REQUIRED", _C.INVALID_ARGUMENT, "a keyless record for a compacted topic")
    UNKNOWN_CONFIG = ("UNKNOWN_CONFIG", _C.INVALID_ARGUMENT, "a topic config key that does not exist")
    INVALID_CONFIG = ("INVALID_CONFIG", _C.INVALID_ARGUMENT, "a bad topic config value")
    INVALID_REQUEST = ("INVALID_REQUEST", _C.INVALID_ARGUMENT, "a malformed or contradictory request")
    OFFSET_OUT_OF_RANGE = ("OFFSET_OUT_OF_RANGE", _C.OUT_OF_RANGE, "an offset outside the log")
    OUT_OF_ORDER_SEQUENCE = ("OUT_OF_ORDER_SEQUENCE", _C.FAILED_PRECONDITION, "an idempotent producer's gap")
    FENCED = ("FENCED", _C.FAILED_PRECONDITION, "a group member that is no longer one, or a stale generation")
    # Kafka producers' only (their epochs), answered with Kafka's codes by the Kafka listener.
    PRODUCER_FENCED = ("PRODUCER_FENCED", _C.FAILED_PRECONDITION, "a Kafka producer's epoch older than its last")
    UNKNOWN_PRODUCER = ("UNKNOWN_PRODUCER", _C.FAILED_PRECONDITION, "a Kafka producer's sequence with no state")
    NOT_OWNER = ("NOT_OWNER", _C.FAILED_PRECONDITION, "a commit for a partition the member does not own")
    GROUP_NOT_EMPTY = ("GROUP_NOT_EMPTY", _C.FAILED_PRECONDITION, "a group with live members")
    GROUP_PROTOCOL_IN_USE = (
        "GROUP_PROTOCOL_IN_USE",
        _C.FAILED_PRECONDITION,
        "a group whose live members speak the other protocol (Kafka's or Tidelog's)",
    )
    GROUP_NOT_FOUND = ("GROUP_NOT_FOUND", _C.NOT_FOUND, "no such group")
    STORAGE_FULL = ("STORAGE_FULL", _C.RESOURCE_EXHAUSTED, "the broker's map or disk is full")
    UNAUTHENTICATED = ("UNAUTHENTICATED", _C.UNAUTHENTICATED, "no token, or one the broker does not know")
    TOO_MANY_STREAMS = ("TOO_MANY_STREAMS", _C.RESOURCE_EXHAUSTED, "the broker's limit of open streams")
    NOT_AUTHORIZED = ("NOT_AUTHORIZED", _C.PERMISSION_DENIED, "an ACL does not allow it")
    ACLS_OFF = ("ACLS_OFF", _C.FAILED_PRECONDITION, "ACLs are not enabled on this broker")
    INVALID_ACL = ("INVALID_ACL", _C.INVALID_ARGUMENT, "an ACL rule that does not parse")
    SHUTTING_DOWN = ("SHUTTING_DOWN", _C.UNAVAILABLE, "the broker is stopping")
    NOT_LEADER = ("NOT_LEADER", _C.UNAVAILABLE, "another broker leads the partition (its id and address attached)")
    LEADER_NOT_AVAILABLE = ("LEADER_NOT_AVAILABLE", _C.UNAVAILABLE, "the partition has no leader right now")
    NOT_COORDINATOR = (
        "NOT_COORDINATOR",
        _C.UNAVAILABLE,
        "another broker coordinates the group (its id and address attached), or none does yet: retry",
    )
    NOT_ENOUGH_REPLICAS = (
        "NOT_ENOUGH_REPLICAS",
        _C.UNAVAILABLE,
        "acks=all refused: fewer in-sync replicas than min.insync.replicas (nothing was written)",
    )
    REPLICATION_TIMEOUT = (
        "REPLICATION_TIMEOUT",
        _C.UNAVAILABLE,
        "the in-sync replicas did not confirm in time: the records may be stored (retry idempotently)",
    )
    INVALID_REPLICATION_FACTOR = (
        "INVALID_REPLICATION_FACTOR",
        _C.INVALID_ARGUMENT,
        "a replication factor the live brokers cannot hold",
    )
    UNSUPPORTED_IN_CLUSTER = (
        "UNSUPPORTED_IN_CLUSTER",
        _C.FAILED_PRECONDITION,
        "what a single broker does but a cluster does not (group delivery of partitions this broker lacks)",
    )
    CLUSTER_UNAVAILABLE = ("CLUSTER_UNAVAILABLE", _C.UNAVAILABLE, "the cluster's metadata store (etcd) is out of reach")
    INTERNAL = ("INTERNAL", _C.INTERNAL, "a broker bug")
