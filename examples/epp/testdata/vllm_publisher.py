#!/usr/bin/env python3
"""A stand-in for one vLLM engine's KV-event publisher, for kvtrack's tests.

It hashes token sequences the way vLLM (v0.10.2+) does with
--prefix-caching-hash-algo sha256 -- SHA-256 over pickle protocol 5 of
(parent, tuple(block_tokens), None), chained from NONE_HASH = sha256(pickle(seed)),
published as the low 64 bits -- and publishes one batch, a BlockStored per
sequence in vLLM's v0.23 array layout, with vLLM's 3-frame message
[topic, seq (8 bytes big-endian), msgpack(EventBatch)].

The socket is an XPUB (a PUB on the wire) so the batch can wait until a
subscriber has joined: a PUB drops what is sent before that. It is sent
once, as vLLM would: every BlockStored takes a reference in the index.

Usage: vllm_publisher.py ENDPOINT TOPIC SEED BLOCK_SIZE [LORA_NAME] < sequences.json
(sequences.json: one line, a JSON array of token-ID arrays). With LORA_NAME
the blocks are a LoRA adapter's, as vLLM v0.14+ hashes and publishes them:
the adapter's name is every block's extra key, (LORA_NAME,), and the event
carries lora_id 1, lora_name and those extra keys. Prints "ready"
once bound and "published" once the batch is sent; exits when stdin closes.
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


def block_hashes(tokens, seed, block_size, extra=None):
    parent = sha256(seed)  # NONE_HASH
    out = []
    for i in range(len(tokens) // block_size):
        parent = sha256((parent, tuple(tokens[i * block_size:(i + 1) * block_size]), extra))
        out.append(int.from_bytes(parent, "big") & (2**64 - 1))
    return out


def block_stored(tokens, seed, block_size, lora_name=None):
    n = len(tokens) // block_size
    if lora_name is None:
        return ["BlockStored", block_hashes(tokens, seed, block_size), None, tokens[: n * block_size],
                block_size, None, "GPU", None, [None] * n, 0, "full_attention", None]
    extra = (lora_name,)
    return ["BlockStored", block_hashes(tokens, seed, block_size, extra), None, tokens[: n * block_size],
            block_size, 1, "GPU", lora_name, [list(extra)] * n, 0, "full_attention", None]


def main():
    endpoint, topic, seed, block_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    lora_name = sys.argv[5] if len(sys.argv) > 5 else None
    sequences = json.loads(sys.stdin.readline())
    events = [block_stored(toks, seed, block_size, lora_name) for toks in sequences]

    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(endpoint)
    print("ready", flush=True)

    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    while not done.is_set():
        if pub.poll(50) and pub.recv()[:1] == b"\x01":  # a subscription
            batch = msgpack.packb([time.time(), events, 0], use_bin_type=True)
            pub.send_multipart([topic.encode(), (0).to_bytes(8, "big"), batch])
            print("published", flush=True)
            break
    done.wait()
    pub.close()
    ctx.term()


if __name__ == "__main__":
    main()
