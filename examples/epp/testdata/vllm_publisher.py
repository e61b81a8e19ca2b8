#!/usr/bin/env python3
"""A stand-in for one vLLM engine's KV-event publisher, for kvtrack's tests.

It hashes a token sequence the way vLLM (v0.10.2+) does with
--prefix-caching-hash-algo sha256 -- SHA-256 over pickle protocol 5 of
(parent, tuple(block_tokens), None), chained from NONE_HASH = sha256(pickle(seed)),
published as the low 64 bits -- and publishes one BlockStored batch in vLLM's
v0.23 array layout on a ZMQ PUB socket with vLLM's 3-frame message
[topic, seq (8 bytes big-endian), msgpack(EventBatch)].

PUB/SUB drops messages sent before a subscriber has joined, so the batch is
re-sent, with a new sequence number each time as vLLM would, every interval
until stdin is closed. Prints "ready" once bound.

Usage: vllm_publisher.py ENDPOINT TOPIC SEED BLOCK_SIZE < tokens.json
(tokens.json: a JSON array of token IDs, read as the first line of stdin).
Needs Debian's python3-zmq and python3-msgpack.
"""
import hashlib
import json
import pickle
import sys
import threading
import time

import msgpack
import zmq


def sha256(obj):
    return hashlib.sha256(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)).digest()


def block_hashes(tokens, seed, block_size):
    parent = sha256(seed)  # NONE_HASH
    out = []
    for i in range(len(tokens) // block_size):
        parent = sha256((parent, tuple(tokens[i * block_size:(i + 1) * block_size]), None))
        out.append(int.from_bytes(parent, "big") & (2**64 - 1))
    return out


def main():
    endpoint, topic, seed, block_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    tokens = json.loads(sys.stdin.readline())
    n = len(tokens) // block_size
    hashes = block_hashes(tokens, seed, block_size)
    stored = ["BlockStored", hashes, None, tokens[: n * block_size], block_size,
              None, "GPU", None, [None] * n, 0, "full_attention", None]

    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind(endpoint)
    print("ready", flush=True)

    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    seq = 0
    while not done.is_set():
        batch = msgpack.packb([time.time(), [stored], 0], use_bin_type=True)
        pub.send_multipart([topic.encode(), seq.to_bytes(8, "big"), batch])
        seq += 1
        done.wait(0.05)
    pub.close(linger=0)
    ctx.term()


if __name__ == "__main__":
    main()
