"""A Milvus client that asks once, stays idle until a line comes on stdin, then asks again.

    python -m tests.support.milvus_idle_client URI adrag|pinging

``adrag`` connects as adrag does (:class:`MilvusIndex`, its gRPC options); ``pinging`` with
pymilvus' own keepalive (a ping while idle) at a 1 s cadence, so a server that refuses such
pings says so within seconds. Each ask prints ``answered``; gRPC logs go to stderr.
"""

from __future__ import annotations

import sys

from pymilvus import MilvusClient

from adrag_assets.index.milvus import MilvusIndex

# Only the cadence is changed: pymilvus pings idle connections already, every 10 s, and gRPC
# allows two pings without data by default before it waits a minute.
PINGING = {"grpc.keepalive_time_ms": 1000, "grpc.http2.max_pings_without_data": 0}


def main(uri: str, mode: str) -> None:
    if mode == "adrag":
        client = MilvusIndex(uri).client
    else:
        client = MilvusClient(uri=uri, grpc_options=PINGING)
    client.list_collections()
    print("answered", flush=True)
    sys.stdin.readline()
    client.list_collections()
    print("answered", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
