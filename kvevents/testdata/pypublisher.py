#!/usr/bin/python3
"""An independent vLLM-protocol KV-event publisher for kvtrack's tests.

It speaks vLLM's ZmqEventPublisher protocol with pyzmq and msgpack-python
(which, with use_bin_type=True, produces the same bytes as vLLM's msgspec
encoder for these types): a PUB socket sending [topic, seq(8B BE), payload]
with sequence numbers from 0, and a ROUTER replay socket answering
[identity, b"", start_seq] with every buffered message from start_seq on and
the END marker.

Protocol with the test, one line each way:
  -> "ready"                      sockets are bound
  it then sends empty batches every 10 ms until it reads "go" on stdin;
  it publishes a seeded random scenario, leaving some messages off the wire
  (they stay in the replay buffer), and ends with a few delivered messages;
  -> {"truth": [[hash, medium, refs], ...]}   the blocks the engine holds
  it keeps serving replays until stdin closes.

Usage: pypublisher.py --pub EP --replay EP --layout v0.23|v0.24
                      [--hashes int|bytes] [--reply-topic] [--topic T] [--seed N]
"""
import argparse
import json
import random
import select
import struct
import sys
import threading
import time

import msgpack
import zmq

END_SEQ = (-1).to_bytes(8, "big", signed=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pub", required=True)
    ap.add_argument("--replay", required=True)
    ap.add_argument("--layout", choices=["v0.23", "v0.24"], default="v0.23")
    ap.add_argument("--hashes", choices=["int", "bytes"], default="int")
    ap.add_argument("--reply-topic", action="store_true")
    ap.add_argument("--topic", default="")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batches", type=int, default=400)
    args = ap.parse_args()

    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(args.pub)
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(args.replay)

    lock = threading.Lock()
    buffer = []  # (seq, payload)
    state = {"seq": 0}
    topic = args.topic.encode()

    def send(payload, drop=False):
        with lock:
            seq = state["seq"]
            state["seq"] += 1
            buffer.append((seq, payload))
        if not drop:
            pub.send_multipart([topic, seq.to_bytes(8, "big"), payload])

    stop = threading.Event()

    def serve_replay():
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        while not stop.is_set():
            if not poller.poll(20):
                continue
            frames = router.recv_multipart()
            if len(frames) != 3 or frames[1] != b"" or len(frames[2]) != 8:
                continue  # vLLM logs "Invalid replay request" and ignores it
            start = int.from_bytes(frames[2], "big")
            with lock:
                items = [(s, p) for s, p in buffer if s >= start]
            for s, p in items:
                if args.reply_topic:
                    router.send_multipart([frames[0], b"", topic, s.to_bytes(8, "big"), p])
                else:
                    router.send_multipart([frames[0], b"", s.to_bytes(8, "big"), p])
            if args.reply_topic:
                router.send_multipart([frames[0], b"", b"", END_SEQ, b""])
            else:
                router.send_multipart([frames[0], b"", END_SEQ, b""])

    replay_thread = threading.Thread(target=serve_replay, daemon=True)
    replay_thread.start()

    def batch(events):
        return msgpack.packb([1767225600.125, events, 0], use_bin_type=True)

    print("ready", flush=True)
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], 0.01)
        if ready and sys.stdin.readline().strip() == "go":
            break
        send(batch([]))

    rng = random.Random(args.seed)
    truth = {}  # (uint64 hash, medium) -> refs
    wire = {}  # uint64 -> what goes on the wire (int or 32 bytes)

    def new_hash():
        if args.hashes == "bytes":
            digest = bytes(rng.getrandbits(8) for _ in range(32))
            h = int.from_bytes(digest, "big") & (2**64 - 1)
            wire[h] = digest
        else:
            h = rng.getrandbits(64)
            wire[h] = h
        return h

    def stored(hs, parent, medium):
        tokens = [rng.randrange(150000) for _ in range(16 * len(hs))]
        for h in hs:
            truth[(h, medium)] = truth.get((h, medium), 0) + 1
        fields = {
            "block_hashes": [wire[h] for h in hs],
            "parent_block_hash": wire[parent] if parent is not None else None,
            "token_ids": tokens,
            "block_size": 16,
            "lora_id": None,
            "medium": medium,
            "lora_name": None,
            "extra_keys": [None] * len(hs),
            "group_idx": 0,
            "kv_cache_spec_kind": "full_attention",
            "kv_cache_spec_sliding_window": None,
        }
        if args.layout == "v0.23":
            return ["BlockStored"] + list(fields.values())
        # msgspec omits defaulted fields equal to None in map mode.
        return {"type": "BlockStored", **{k: v for k, v in fields.items()
                                            if v is not None or k in ("parent_block_hash", "lora_id", "lora_name", "medium")}}

    def removed(h, medium):
        refs = truth[(h, medium)] - 1
        if refs:
            truth[(h, medium)] = refs
        else:
            del truth[(h, medium)]
        if args.layout == "v0.23":
            return ["BlockRemoved", [wire[h]], medium, 0]
        return {"type": "BlockRemoved", "block_hashes": [wire[h]], "medium": medium, "group_idx": 0}

    last = None
    for i in range(args.batches):
        events = []
        for _ in range(rng.randint(1, 3)):
            r = rng.randrange(100)
            if r < 40 and truth:
                h, medium = rng.choice(sorted(truth))
                events.append(removed(h, medium))
            else:
                hs = [new_hash() for _ in range(rng.randint(1, 4))]
                events.append(stored(hs, last, rng.choice(["GPU", "GPU", "CPU"])))
                last = hs[-1]
        drop = i < args.batches - 5 and rng.randrange(10) == 0
        send(batch(events), drop)

    out = [[h, medium, refs] for (h, medium), refs in sorted(truth.items())]
    print(json.dumps({"truth": out}), flush=True)
    sys.stdin.read()  # serve replays until the test closes stdin
    stop.set()
    replay_thread.join()
    pub.close()
    router.close()
    ctx.term()


if __name__ == "__main__":
    main()
