"""The Kafka wire protocol (`--kafka-listen`): `wire` (primitive types), `schema` (messages as data,
one codec), `messages` (the APIs spoken), `apis` (answers), `listener` (TCP framing)."""
