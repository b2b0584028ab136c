"""Kafka's message specs for the APIs the listener speaks: generated, do not edit.

Made by scripts/gen_kafka_messages.py from Apache Kafka's JSON specs as shipped in
kafka-python==3.0.12. Each Message's version range is what this broker answers (SPOKEN in the script)."""

from __future__ import annotations

from tidelog.broker.kafka.schema import Message, field, struct

API_VERSIONS_REQUEST = Message(
    "ApiVersionsRequest",
    18,
    (0, 4),
    3,
    struct(
        field("client_software_name", "string", "3+"),
        field("client_software_version", "string", "3+"),
    ),
)

API_VERSIONS_RESPONSE = Message(
    "ApiVersionsResponse",
    18,
    (0, 4),
    3,
    struct(
        field("error_code", "int16", "0+"),
        field(
            "api_keys",
            struct(
                field("api_key", "int16", "0+"),
                field("min_version", "int16", "0+"),
                field("max_version", "int16", "0+"),
            ),
            "0+",
            array=True,
        ),
        field("throttle_time_ms", "int32", "1+"),
        field(
            "supported_features",
            struct(
                field("name", "string", "3+"),
                field("min_version", "int16", "3+"),
                field("max_version", "int16", "3+"),
            ),
            "3+",
            array=True,
            tag=0,
        ),
        field("finalized_features_epoch", "int64", "3+", tag=1, default=-1),
        field(
            "finalized_features",
            struct(
                field("name", "string", "3+"),
                field("max_version_level", "int16", "3+"),
                field("min_version_level", "int16", "3+"),
            ),
            "3+",
            array=True,
            tag=2,
        ),
        field("zk_migration_ready", "bool", "3+", tag=3),
    ),
)

METADATA_REQUEST = Message(
    "MetadataRequest",
    3,
    (1, 12),
    9,
    struct(
        field(
            "topics",
            struct(
                field("topic_id", "uuid", "10+"),
                field("name", "string", "0+", nullable="10+"),
            ),
            "0+",
            array=True,
            nullable="1+",
        ),
        field("allow_auto_topic_creation", "bool", "4+", default=True),
        field("include_cluster_authorized_operations", "bool", "8-10"),
        field("include_topic_authorized_operations", "bool", "8+"),
    ),
)

METADATA_RESPONSE = Message(
    "MetadataResponse",
    3,
    (1, 12),
    9,
    struct(
        field("throttle_time_ms", "int32", "3+"),
        field(
            "brokers",
            struct(
                field("node_id", "int32", "0+"),
                field("host", "string", "0+"),
                field("port", "int32", "0+"),
                field("rack", "string", "1+", nullable="1+"),
            ),
            "0+",
            array=True,
        ),
        field("cluster_id", "string", "2+", nullable="2+"),
        field("controller_id", "int32", "1+", default=-1),
        field(
            "topics",
            struct(
                field("error_code", "int16", "0+"),
                field("name", "string", "0+", nullable="12+"),
                field("topic_id", "uuid", "10+"),
                field("is_internal", "bool", "1+"),
                field(
                    "partitions",
                    struct(
                        field("error_code", "int16", "0+"),
                        field("partition_index", "int32", "0+"),
                        field("leader_id", "int32", "0+"),
                        field("leader_epoch", "int32", "7+", default=-1),
                        field("replica_nodes", "int32", "0+", array=True),
                        field("isr_nodes", "int32", "0+", array=True),
                        field("offline_replicas", "int32", "5+", array=True),
                    ),
                    "0+",
                    array=True,
                ),
                field("topic_authorized_operations", "int32", "8+", default=-2147483648),
            ),
            "0+",
            array=True,
        ),
        field("cluster_authorized_operations", "int32", "8-10", default=-2147483648),
        field("error_code", "int16", "13+"),
    ),
)

LIST_OFFSETS_REQUEST = Message(
    "ListOffsetsRequest",
    2,
    (1, 6),
    6,
    struct(
        field("replica_id", "int32", "0+"),
        field("isolation_level", "int8", "2+"),
        field(
            "topics",
            struct(
                field("name", "string", "0+"),
                field(
                    "partitions",
                    struct(
                        field("partition_index", "int32", "0+"),
                        field("current_leader_epoch", "int32", "4+", default=-1),
                        field("timestamp", "int64", "0+"),
                        field("max_num_offsets", "int32", "0", default=1),
                    ),
                    "0+",
                    array=True,
                ),
            ),
            "0+",
            array=True,
        ),
        field("timeout_ms", "int32", "10+"),
    ),
)

LIST_OFFSETS_RESPONSE = Message(
    "ListOffsetsResponse",
    2,
    (1, 6),
    6,
    struct(
        field("throttle_time_ms", "int32", "2+"),
        field(
            "topics",
            struct(
                field("name", "string", "0+"),
                field(
                    "partitions",
                    struct(
                        field("partition_index", "int32", "0+"),
                        field("error_code", "int16", "0+"),
                        field("old_style_offsets", "int64", "0", array=True),
                        field("timestamp", "int64", "1+", default=-1),
                        field("offset", "int64", "1+", default=-1),
                        field("leader_epoch", "int32", "4+", default=-1),
                    ),
                    "0+",
                    array=True,
                ),
            ),
            "0+",
            array=True,
        ),
    ),
)

# (request, response) by API key: what ApiVersions advertises, in this order.
APIS: dict[int, tuple[Message, Message]] = {
    API_VERSIONS_REQUEST.api_key: (API_VERSIONS_REQUEST, API_VERSIONS_RESPONSE),
    METADATA_REQUEST.api_key: (METADATA_REQUEST, METADATA_RESPONSE),
    LIST_OFFSETS_REQUEST.api_key: (LIST_OFFSETS_REQUEST, LIST_OFFSETS_RESPONSE),
}
