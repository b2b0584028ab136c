"""gRPC targets for a list of HOST:PORT addresses (a client's bootstrap list, a broker's etcd endpoints)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence


def grpc_target(entries: Sequence[str]) -> str:
    """One address as given; several as one channel over all of them (gRPC's pick_first: the first
    that answers, the next when it fails). Names are resolved here, once; one that does not resolve
    now is left out (the others may answer). IPv4 first: one address family per target."""
    entries = [entry.strip() for entry in entries if entry.strip()]
    if len(entries) <= 1:
        return entries[0] if entries else ""
    addresses = []
    for entry in entries:
        host, _, port = entry.rpartition(":")
        host = host.strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            try:
                host = str(socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)[0][4][0])
            except (OSError, ValueError):
                continue
        addresses.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    ipv4 = [a for a in addresses if not a.startswith("[")]
    if ipv4:
        return "ipv4:" + ",".join(ipv4)
    return "ipv6:" + ",".join(addresses) if addresses else entries[0]
