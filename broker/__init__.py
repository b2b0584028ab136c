"""Tidelog broker: a Kafka-style log on LMDB behind a grpc.aio server."""
