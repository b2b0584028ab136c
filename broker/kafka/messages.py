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

PRODUCE_REQUEST = Message(
    "ProduceRequest",
    0,
    (3, 10),
    9,
    struct(
        field("transactional_id", "string", "3+", nullable="3+"),
        field("acks", "int16", "0+"),
        field("timeout_ms", "int32", "0+"),
        field(
            "topic_data",
            struct(
                field("name", "string", "0-12"),
                field("topic_id", "uuid", "13+"),
                field(
                    "partition_data",
                    struct(
                        field("index", "int32", "0+"),
                        field("records", "records", "0+", nullable="0+"),
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

PRODUCE_RESPONSE = Message(
    "ProduceResponse",
    0,
    (3, 10),
    9,
    struct(
        field(
            "responses",
            struct(
                field("name", "string", "0-12"),
                field("topic_id", "uuid", "13+"),
                field(
                    "partition_responses",
                    struct(
                        field("index", "int32", "0+"),
                        field("error_code", "int16", "0+"),
                        field("base_offset", "int64", "0+"),
                        field("log_append_time_ms", "int64", "2+", default=-1),
                        field("log_start_offset", "int64", "5+", default=-1),
                        field(
                            "record_errors",
                            struct(
                                field("batch_index", "int32", "8+"),
                                field("batch_index_error_message", "string", "8+", nullable="8+"),
                            ),
                            "8+",
                            array=True,
                        ),
                        field("error_message", "string", "8+", nullable="8+"),
                        field(
                            "current_leader",
                            struct(
                                field("leader_id", "int32", "10+", default=-1),
                                field("leader_epoch", "int32", "10+", default=-1),
                            ),
                            "10+",
                            tag=0,
                        ),
                    ),
                    "0+",
                    array=True,
                ),
            ),
            "0+",
            array=True,
        ),
        field("throttle_time_ms", "int32", "1+"),
        field(
            "node_endpoints",
            struct(
                field("node_id", "int32", "10+"),
                field("host", "string", "10+"),
                field("port", "int32", "10+"),
                field("rack", "string", "10+", nullable="10+"),
            ),
            "10+",
            array=True,
            tag=0,
        ),
    ),
)

FETCH_REQUEST = Message(
    "FetchRequest",
    1,
    (4, 12),
    12,
    struct(
        field("cluster_id", "string", "12+", nullable="12+", tag=0),
        field("replica_id", "int32", "0-14", default=-1),
        field(
            "replica_state",
            struct(
                field("replica_id", "int32", "15+", default=-1),
                field("replica_epoch", "int64", "15+", default=-1),
            ),
            "15+",
            tag=1,
        ),
        field("max_wait_ms", "int32", "0+"),
        field("min_bytes", "int32", "0+"),
        field("max_bytes", "int32", "3+", default=2147483647),
        field("isolation_level", "int8", "4+"),
        field("session_id", "int32", "7+"),
        field("session_epoch", "int32", "7+", default=-1),
        field(
            "topics",
            struct(
                field("topic", "string", "0-12"),
                field("topic_id", "uuid", "13+"),
                field(
                    "partitions",
                    struct(
                        field("partition", "int32", "0+"),
                        field("current_leader_epoch", "int32", "9+", default=-1),
                        field("fetch_offset", "int64", "0+"),
                        field("last_fetched_epoch", "int32", "12+", default=-1),
                        field("log_start_offset", "int64", "5+", default=-1),
                        field("partition_max_bytes", "int32", "0+"),
                        field("replica_directory_id", "uuid", "17+", tag=0),
                        field("high_watermark", "int64", "18+", tag=1, default=9223372036854775807),
                    ),
                    "0+",
                    array=True,
                ),
            ),
            "0+",
            array=True,
        ),
        field(
            "forgotten_topics_data",
            struct(
                field("topic", "string", "7-12"),
                field("topic_id", "uuid", "13+"),
                field("partitions", "int32", "7+", array=True),
            ),
            "7+",
            array=True,
        ),
        field("rack_id", "string", "11+"),
    ),
)

FETCH_RESPONSE = Message(
    "FetchResponse",
    1,
    (4, 12),
    12,
    struct(
        field("throttle_time_ms", "int32", "1+"),
        field("error_code", "int16", "7+"),
        field("session_id", "int32", "7+"),
        field(
            "responses",
            struct(
                field("topic", "string", "0-12"),
                field("topic_id", "uuid", "13+"),
                field(
                    "partitions",
                    struct(
                        field("partition_index", "int32", "0+"),
                        field("error_code", "int16", "0+"),
                        field("high_watermark", "int64", "0+"),
                        field("last_stable_offset", "int64", "4+", default=-1),
                        field("log_start_offset", "int64", "5+", default=-1),
                        field(
                            "diverging_epoch",
                            struct(
                                field("epoch", "int32", "12+", default=-1),
                                field("end_offset", "int64", "12+", default=-1),
                            ),
                            "12+",
                            tag=0,
                        ),
                        field(
                            "current_leader",
                            struct(
                                field("leader_id", "int32", "12+", default=-1),
                                field("leader_epoch", "int32", "12+", default=-1),
                            ),
                            "12+",
                            tag=1,
                        ),
                        field(
                            "snapshot_id",
                            struct(
                                field("end_offset", "int64", "0+", default=-1),
                                field("epoch", "int32", "0+", default=-1),
                            ),
                            "12+",
                            tag=2,
                        ),
                        field(
                            "aborted_transactions",
                            struct(
                                field("producer_id", "int64", "4+"),
                                field("first_offset", "int64", "4+"),
                            ),
                            "4+",
                            array=True,
                            nullable="4+",
                        ),
                        field("preferred_read_replica", "int32", "11+", default=-1),
                        field("records", "records", "0+", nullable="0+"),
                    ),
                    "0+",
                    array=True,
                ),
            ),
            "0+",
            array=True,
        ),
        field(
            "node_endpoints",
            struct(
                field("node_id", "int32", "16+"),
                field("host", "string", "16+"),
                field("port", "int32", "16+"),
                field("rack", "string", "16+", nullable="16+"),
            ),
            "16+",
            array=True,
            tag=0,
        ),
    ),
)

INIT_PRODUCER_ID_REQUEST = Message(
    "InitProducerIdRequest",
    22,
    (0, 4),
    2,
    struct(
        field("transactional_id", "string", "0+", nullable="0+"),
        field("transaction_timeout_ms", "int32", "0+"),
        field("producer_id", "int64", "3+", default=-1),
        field("producer_epoch", "int16", "3+", default=-1),
        field("enable2_pc", "bool", "6+"),
        field("keep_prepared_txn", "bool", "6+"),
    ),
)

INIT_PRODUCER_ID_RESPONSE = Message(
    "InitProducerIdResponse",
    22,
    (0, 4),
    2,
    struct(
        field("throttle_time_ms", "int32", "0+"),
        field("error_code", "int16", "0+"),
        field("producer_id", "int64", "0+", default=-1),
        field("producer_epoch", "int16", "0+"),
        field("ongoing_txn_producer_id", "int64", "6+", default=-1),
        field("ongoing_txn_producer_epoch", "int16", "6+", default=-1),
    ),
)

FIND_COORDINATOR_REQUEST = Message(
    "FindCoordinatorRequest",
    10,
    (0, 4),
    3,
    struct(
        field("key", "string", "0-3"),
        field("key_type", "int8", "1+"),
        field("coordinator_keys", "string", "4+", array=True),
    ),
)

FIND_COORDINATOR_RESPONSE = Message(
    "FindCoordinatorResponse",
    10,
    (0, 4),
    3,
    struct(
        field("throttle_time_ms", "int32", "1+"),
        field("error_code", "int16", "0-3"),
        field("error_message", "string", "1-3", nullable="1-3"),
        field("node_id", "int32", "0-3"),
        field("host", "string", "0-3"),
        field("port", "int32", "0-3"),
        field(
            "coordinators",
            struct(
                field("key", "string", "4+"),
                field("node_id", "int32", "4+"),
                field("host", "string", "4+"),
                field("port", "int32", "4+"),
                field("error_code", "int16", "4+"),
                field("error_message", "string", "4+", nullable="4+"),
            ),
            "4+",
            array=True,
        ),
    ),
)

JOIN_GROUP_REQUEST = Message(
    "JoinGroupRequest",
    11,
    (0, 7),
    6,
    struct(
        field("group_id", "string", "0+"),
        field("session_timeout_ms", "int32", "0+"),
        field("rebalance_timeout_ms", "int32", "1+", default=-1),
        field("member_id", "string", "0+"),
        field("group_instance_id", "string", "5+", nullable="5+"),
        field("protocol_type", "string", "0+"),
        field(
            "protocols",
            struct(
                field("name", "string", "0+"),
                field("metadata", "bytes", "0+"),
            ),
            "0+",
            array=True,
        ),
        field("reason", "string", "8+", nullable="8+"),
    ),
)

JOIN_GROUP_RESPONSE = Message(
    "JoinGroupResponse",
    11,
    (0, 7),
    6,
    struct(
        field("throttle_time_ms", "int32", "2+"),
        field("error_code", "int16", "0+"),
        field("generation_id", "int32", "0+", default=-1),
        field("protocol_type", "string", "7+", nullable="7+"),
        field("protocol_name", "string", "0+", nullable="7+"),
        field("leader", "string", "0+"),
        field("skip_assignment", "bool", "9+"),
        field("member_id", "string", "0+"),
        field(
            "members",
            struct(
                field("member_id", "string", "0+"),
                field("group_instance_id", "string", "5+", nullable="5+"),
                field("metadata", "bytes", "0+"),
            ),
            "0+",
            array=True,
        ),
    ),
)

SYNC_GROUP_REQUEST = Message(
    "SyncGroupRequest",
    14,
    (0, 5),
    4,
    struct(
        field("group_id", "string", "0+"),
        field("generation_id", "int32", "0+"),
        field("member_id", "string", "0+"),
        field("group_instance_id", "string", "3+", nullable="3+"),
        field("protocol_type", "string", "5+", nullable="5+"),
        field("protocol_name", "string", "5+", nullable="5+"),
        field(
            "assignments",
            struct(
                field("member_id", "string", "0+"),
                field("assignment", "bytes", "0+"),
            ),
            "0+",
            array=True,
        ),
    ),
)

SYNC_GROUP_RESPONSE = Message(
    "SyncGroupResponse",
    14,
    (0, 5),
    4,
    struct(
        field("throttle_time_ms", "int32", "1+"),
        field("error_code", "int16", "0+"),
        field("protocol_type", "string", "5+", nullable="5+"),
        field("protocol_name", "string", "5+", nullable="5+"),
        field("assignment", "bytes", "0+"),
    ),
)

HEARTBEAT_REQUEST = Message(
    "HeartbeatRequest",
    12,
    (0, 4),
    4,
    struct(
        field("group_id", "string", "0+"),
        field("generation_id", "int32", "0+"),
        field("member_id", "string", "0+"),
        field("group_instance_id", "string", "3+", nullable="3+"),
    ),
)

HEARTBEAT_RESPONSE = Message(
    "HeartbeatResponse",
    12,
    (0, 4),
    4,
    struct(
        field("throttle_time_ms", "int32", "1+"),
        field("error_code", "int16", "0+"),
    ),
)

LEAVE_GROUP_REQUEST = Message(
    "LeaveGroupRequest",
    13,
    (0, 4),
    4,
    struct(
        field("group_id", "string", "0+"),
        field("member_id", "string", "0-2"),
        field(
            "members",
            struct(
                field("member_id", "string", "3+"),
                field("group_instance_id", "string", "3+", nullable="3+"),
                field("reason", "string", "5+", nullable="5+"),
            ),
            "3+",
            array=True,
        ),
    ),
)

LEAVE_GROUP_RESPONSE = Message(
    "LeaveGroupResponse",
    13,
    (0, 4),
    4,
    struct(
        field("throttle_time_ms", "int32", "1+"),
        field("error_code", "int16", "0+"),
        field(
            "members",
            struct(
                field("member_id", "string", "3+"),
                field("group_instance_id", "string", "3+", nullable="3+"),
                field("error_code", "int16", "3+"),
            ),
            "3+",
            array=True,
        ),
    ),
)

OFFSET_COMMIT_REQUEST = Message(
    "OffsetCommitRequest",
    8,
    (2, 8),
    8,
    struct(
        field("group_id", "string", "0+"),
        field("generation_id_or_member_epoch", "int32", "1+", default=-1),
        field("member_id", "string", "1+"),
        field("group_instance_id", "string", "7+", nullable="7+"),
        field("retention_time_ms", "int64", "2-4", default=-1),
        field(
            "topics",
            struct(
                field("name", "string", "0-9"),
                field("topic_id", "uuid", "10+"),
                field(
                    "partitions",
                    struct(
                        field("partition_index", "int32", "0+"),
                        field("committed_offset", "int64", "0+"),
                        field("committed_leader_epoch", "int32", "6+", default=-1),
                        field("commit_timestamp", "int64", "1", default=-1),
                        field("committed_metadata", "string", "0+", nullable="0+"),
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

OFFSET_COMMIT_RESPONSE = Message(
    "OffsetCommitResponse",
    8,
    (2, 8),
    8,
    struct(
        field("throttle_time_ms", "int32", "3+"),
        field(
            "topics",
            struct(
                field("name", "string", "0-9"),
                field("topic_id", "uuid", "10+"),
                field(
                    "partitions",
                    struct(
                        field("partition_index", "int32", "0+"),
                        field("error_code", "int16", "0+"),
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

OFFSET_FETCH_REQUEST = Message(
    "OffsetFetchRequest",
    9,
    (1, 8),
    6,
    struct(
        field("group_id", "string", "0-7"),
        field(
            "topics",
            struct(
                field("name", "string", "0-7"),
                field("partition_indexes", "int32", "0-7", array=True),
            ),
            "0-7",
            array=True,
            nullable="2-7",
        ),
        field(
            "groups",
            struct(
                field("group_id", "string", "8+"),
                field("member_id", "string", "9+", nullable="9+"),
                field("member_epoch", "int32", "9+", default=-1),
                field(
                    "topics",
                    struct(
                        field("name", "string", "8-9"),
                        field("topic_id", "uuid", "10+"),
                        field("partition_indexes", "int32", "8+", array=True),
                    ),
                    "8+",
                    array=True,
                    nullable="8+",
                ),
            ),
            "8+",
            array=True,
        ),
        field("require_stable", "bool", "7+"),
    ),
)

OFFSET_FETCH_RESPONSE = Message(
    "OffsetFetchResponse",
    9,
    (1, 8),
    6,
    struct(
        field("throttle_time_ms", "int32", "3+"),
        field(
            "topics",
            struct(
                field("name", "string", "0-7"),
                field(
                    "partitions",
                    struct(
                        field("partition_index", "int32", "0-7"),
                        field("committed_offset", "int64", "0-7"),
                        field("committed_leader_epoch", "int32", "5-7", default=-1),
                        field("metadata", "string", "0-7", nullable="0-7"),
                        field("error_code", "int16", "0-7"),
                    ),
                    "0-7",
                    array=True,
                ),
            ),
            "0-7",
            array=True,
        ),
        field("error_code", "int16", "2-7"),
        field(
            "groups",
            struct(
                field("group_id", "string", "8+"),
                field(
                    "topics",
                    struct(
                        field("name", "string", "8-9"),
                        field("topic_id", "uuid", "10+"),
                        field(
                            "partitions",
                            struct(
                                field("partition_index", "int32", "8+"),
                                field("committed_offset", "int64", "8+"),
                                field("committed_leader_epoch", "int32", "8+", default=-1),
                                field("metadata", "string", "8+", nullable="8+"),
                                field("error_code", "int16", "8+"),
                            ),
                            "8+",
                            array=True,
                        ),
                    ),
                    "8+",
                    array=True,
                ),
                field("error_code", "int16", "8+"),
            ),
            "8+",
            array=True,
        ),
    ),
)

CREATE_TOPICS_REQUEST = Message(
    "CreateTopicsRequest",
    19,
    (2, 7),
    5,
    struct(
        field(
            "topics",
            struct(
                field("name", "string", "0+"),
                field("num_partitions", "int32", "0+"),
                field("replication_factor", "int16", "0+"),
                field(
                    "assignments",
                    struct(
                        field("partition_index", "int32", "0+"),
                        field("broker_ids", "int32", "0+", array=True),
                    ),
                    "0+",
                    array=True,
                ),
                field(
                    "configs",
                    struct(
                        field("name", "string", "0+"),
                        field("value", "string", "0+", nullable="0+"),
                    ),
                    "0+",
                    array=True,
                ),
            ),
            "0+",
            array=True,
        ),
        field("timeout_ms", "int32", "0+", default=60000),
        field("validate_only", "bool", "1+"),
    ),
)

CREATE_TOPICS_RESPONSE = Message(
    "CreateTopicsResponse",
    19,
    (2, 7),
    5,
    struct(
        field("throttle_time_ms", "int32", "2+"),
        field(
            "topics",
            struct(
                field("name", "string", "0+"),
                field("topic_id", "uuid", "7+"),
                field("error_code", "int16", "0+"),
                field("error_message", "string", "1+", nullable="0+"),
                field("topic_config_error_code", "int16", "5+", tag=0),
                field("num_partitions", "int32", "5+", default=-1),
                field("replication_factor", "int16", "5+", default=-1),
                field(
                    "configs",
                    struct(
                        field("name", "string", "5+"),
                        field("value", "string", "5+", nullable="5+"),
                        field("read_only", "bool", "5+"),
                        field("config_source", "int8", "5+", default=-1),
                        field("is_sensitive", "bool", "5+"),
                    ),
                    "5+",
                    array=True,
                    nullable="5+",
                ),
            ),
            "0+",
            array=True,
        ),
    ),
)

DELETE_TOPICS_REQUEST = Message(
    "DeleteTopicsRequest",
    20,
    (1, 5),
    4,
    struct(
        field(
            "topics",
            struct(
                field("name", "string", "6+", nullable="6+"),
                field("topic_id", "uuid", "6+"),
            ),
            "6+",
            array=True,
        ),
        field("topic_names", "string", "0-5", array=True),
        field("timeout_ms", "int32", "0+"),
    ),
)

DELETE_TOPICS_RESPONSE = Message(
    "DeleteTopicsResponse",
    20,
    (1, 5),
    4,
    struct(
        field("throttle_time_ms", "int32", "1+"),
        field(
            "responses",
            struct(
                field("name", "string", "0+", nullable="6+"),
                field("topic_id", "uuid", "6+"),
                field("error_code", "int16", "0+"),
                field("error_message", "string", "5+", nullable="5+"),
            ),
            "0+",
            array=True,
        ),
    ),
)

DESCRIBE_CONFIGS_REQUEST = Message(
    "DescribeConfigsRequest",
    32,
    (1, 4),
    4,
    struct(
        field(
            "resources",
            struct(
                field("resource_type", "int8", "0+"),
                field("resource_name", "string", "0+"),
                field("configuration_keys", "string", "0+", array=True, nullable="0+"),
            ),
            "0+",
            array=True,
        ),
        field("include_synonyms", "bool", "1+"),
        field("include_documentation", "bool", "3+"),
    ),
)

DESCRIBE_CONFIGS_RESPONSE = Message(
    "DescribeConfigsResponse",
    32,
    (1, 4),
    4,
    struct(
        field("throttle_time_ms", "int32", "0+"),
        field(
            "results",
            struct(
                field("error_code", "int16", "0+"),
                field("error_message", "string", "0+", nullable="0+"),
                field("resource_type", "int8", "0+"),
                field("resource_name", "string", "0+"),
                field(
                    "configs",
                    struct(
                        field("name", "string", "0+"),
                        field("value", "string", "0+", nullable="0+"),
                        field("read_only", "bool", "0+"),
                        field("config_source", "int8", "1+", default=-1),
                        field("is_default", "bool", "0"),
                        field("is_sensitive", "bool", "0+"),
                        field(
                            "synonyms",
                            struct(
                                field("name", "string", "1+"),
                                field("value", "string", "1+", nullable="0+"),
                                field("source", "int8", "1+"),
                            ),
                            "1+",
                            array=True,
                        ),
                        field("config_type", "int8", "3+"),
                        field("documentation", "string", "3+", nullable="0+"),
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

LIST_GROUPS_REQUEST = Message(
    "ListGroupsRequest",
    16,
    (0, 4),
    3,
    struct(
        field("states_filter", "string", "4+", array=True),
        field("types_filter", "string", "5+", array=True),
    ),
)

LIST_GROUPS_RESPONSE = Message(
    "ListGroupsResponse",
    16,
    (0, 4),
    3,
    struct(
        field("throttle_time_ms", "int32", "1+"),
        field("error_code", "int16", "0+"),
        field(
            "groups",
            struct(
                field("group_id", "string", "0+"),
                field("protocol_type", "string", "0+"),
                field("group_state", "string", "4+"),
                field("group_type", "string", "5+"),
            ),
            "0+",
            array=True,
        ),
    ),
)

DESCRIBE_GROUPS_REQUEST = Message(
    "DescribeGroupsRequest",
    15,
    (0, 5),
    5,
    struct(
        field("groups", "string", "0+", array=True),
        field("include_authorized_operations", "bool", "3+"),
    ),
)

DESCRIBE_GROUPS_RESPONSE = Message(
    "DescribeGroupsResponse",
    15,
    (0, 5),
    5,
    struct(
        field("throttle_time_ms", "int32", "1+"),
        field(
            "groups",
            struct(
                field("error_code", "int16", "0+"),
                field("error_message", "string", "6+", nullable="6+"),
                field("group_id", "string", "0+"),
                field("group_state", "string", "0+"),
                field("protocol_type", "string", "0+"),
                field("protocol_data", "string", "0+"),
                field(
                    "members",
                    struct(
                        field("member_id", "string", "0+"),
                        field("group_instance_id", "string", "4+", nullable="4+"),
                        field("client_id", "string", "0+"),
                        field("client_host", "string", "0+"),
                        field("member_metadata", "bytes", "0+"),
                        field("member_assignment", "bytes", "0+"),
                    ),
                    "0+",
                    array=True,
                ),
                field("authorized_operations", "int32", "3+", default=-2147483648),
            ),
            "0+",
            array=True,
        ),
    ),
)

SASL_HANDSHAKE_REQUEST = Message(
    "SaslHandshakeRequest",
    17,
    (1, 1),
    32767,
    struct(
        field("mechanism", "string", "0+"),
    ),
)

SASL_HANDSHAKE_RESPONSE = Message(
    "SaslHandshakeResponse",
    17,
    (1, 1),
    32767,
    struct(
        field("error_code", "int16", "0+"),
        field("mechanisms", "string", "0+", array=True),
    ),
)

SASL_AUTHENTICATE_REQUEST = Message(
    "SaslAuthenticateRequest",
    36,
    (0, 2),
    2,
    struct(
        field("auth_bytes", "bytes", "0+"),
    ),
)

SASL_AUTHENTICATE_RESPONSE = Message(
    "SaslAuthenticateResponse",
    36,
    (0, 2),
    2,
    struct(
        field("error_code", "int16", "0+"),
        field("error_message", "string", "0+", nullable="0+"),
        field("auth_bytes", "bytes", "0+"),
        field("session_lifetime_ms", "int64", "1+"),
    ),
)

# (request, response) by API key: what ApiVersions advertises, in this order.
APIS: dict[int, tuple[Message, Message]] = {
    API_VERSIONS_REQUEST.api_key: (API_VERSIONS_REQUEST, API_VERSIONS_RESPONSE),
    METADATA_REQUEST.api_key: (METADATA_REQUEST, METADATA_RESPONSE),
    LIST_OFFSETS_REQUEST.api_key: (LIST_OFFSETS_REQUEST, LIST_OFFSETS_RESPONSE),
    PRODUCE_REQUEST.api_key: (PRODUCE_REQUEST, PRODUCE_RESPONSE),
    FETCH_REQUEST.api_key: (FETCH_REQUEST, FETCH_RESPONSE),
    INIT_PRODUCER_ID_REQUEST.api_key: (INIT_PRODUCER_ID_REQUEST, INIT_PRODUCER_ID_RESPONSE),
    FIND_COORDINATOR_REQUEST.api_key: (FIND_COORDINATOR_REQUEST, FIND_COORDINATOR_RESPONSE),
    JOIN_GROUP_REQUEST.api_key: (JOIN_GROUP_REQUEST, JOIN_GROUP_RESPONSE),
    SYNC_GROUP_REQUEST.api_key: (SYNC_GROUP_REQUEST, SYNC_GROUP_RESPONSE),
    HEARTBEAT_REQUEST.api_key: (HEARTBEAT_REQUEST, HEARTBEAT_RESPONSE),
    LEAVE_GROUP_REQUEST.api_key: (LEAVE_GROUP_REQUEST, LEAVE_GROUP_RESPONSE),
    OFFSET_COMMIT_REQUEST.api_key: (OFFSET_COMMIT_REQUEST, OFFSET_COMMIT_RESPONSE),
    OFFSET_FETCH_REQUEST.api_key: (OFFSET_FETCH_REQUEST, OFFSET_FETCH_RESPONSE),
    CREATE_TOPICS_REQUEST.api_key: (CREATE_TOPICS_REQUEST, CREATE_TOPICS_RESPONSE),
    DELETE_TOPICS_REQUEST.api_key: (DELETE_TOPICS_REQUEST, DELETE_TOPICS_RESPONSE),
    DESCRIBE_CONFIGS_REQUEST.api_key: (DESCRIBE_CONFIGS_REQUEST, DESCRIBE_CONFIGS_RESPONSE),
    LIST_GROUPS_REQUEST.api_key: (LIST_GROUPS_REQUEST, LIST_GROUPS_RESPONSE),
    DESCRIBE_GROUPS_REQUEST.api_key: (DESCRIBE_GROUPS_REQUEST, DESCRIBE_GROUPS_RESPONSE),
    SASL_HANDSHAKE_REQUEST.api_key: (SASL_HANDSHAKE_REQUEST, SASL_HANDSHAKE_RESPONSE),
    SASL_AUTHENTICATE_REQUEST.api_key: (SASL_AUTHENTICATE_REQUEST, SASL_AUTHENTICATE_RESPONSE),
}
