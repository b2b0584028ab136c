"""`tidelog bench`: Tidelog's throughput and latency through the Python SDK, beside its peers.

Modes: ``produce`` (acknowledged writes), ``consume`` (a catch-up read of what was
produced), ``e2e`` (send at a fixed rate while a subscriber reads; latency from send
to receipt) and ``fanout`` (N subscribers reading one partition). ``--vs redis,nats``
runs Redis Streams and NATS JetStream with their own Python clients in the same run
(scripts/bench/peers.py). Every figure is a median of ``--runs`` with min-max.
"""
