#!/usr/bin/python3
"""Generate kvcache/blockhash/testdata/extra-hash-vectors.json.

An independent oracle for the cases vLLM's own reference vectors
(testdata/vllm-hash-vectors.json) do not cover: block sizes 1, 2, 3, 256 and
one large enough to split pickle frames, token ids above 65535 and 2^31,
empty prompts, other seeds, and every extra-key form under every algorithm.
It applies vLLM's documented recipe (shared/spec/vllm-block-hashing.md) with
the real serializers: CPython's pickle (protocol 5), cbor2 canonical, xxhash.

Run with Debian's python3 (python3-cbor2, python3-xxhash):
    /usr/bin/python3 hack/gen-hash-vectors.py > kvcache/blockhash/testdata/extra-hash-vectors.json
"""
import hashlib
import json
import pickle
import random

import cbor2
import xxhash

MASK = 2**64 - 1


def serialize(algo, obj):
    if algo in ("sha256", "xxhash"):
        return pickle.dumps(obj, protocol=5)
    return cbor2.dumps(obj, canonical=True)


def digest(algo, data):
    if algo.startswith("sha256"):
        return hashlib.sha256(data).digest()
    return xxhash.xxh3_128_digest(data)


def block_hashes(algo, seed, bs, tokens, extra):
    if algo == "sha256_cbor_64bit":
        parent = int.from_bytes(digest(algo, serialize(algo, seed)), "big") & MASK
    else:
        parent = digest(algo, serialize(algo, seed))
    out = []
    for i in range(len(tokens) // bs):
        ek = None if extra is None or extra[i] is None else tuple(extra[i])
        obj = (parent, tuple(tokens[i * bs:(i + 1) * bs]), ek)
        d = digest(algo, serialize(algo, obj))
        if algo == "sha256_cbor_64bit":
            parent = int.from_bytes(d, "big") & MASK
            out.append(parent)
        else:
            parent = d
            out.append(int.from_bytes(d, "big") & MASK)
    return out


def to_json_extra(extra):
    if extra is None:
        return None
    blocks = []
    for b in extra:
        if b is None:
            blocks.append(None)
            continue
        items = []
        for it in b:
            if isinstance(it, bytes):
                items.append({"bytes": it.hex()})
            elif isinstance(it, tuple):
                items.append(list(it))
            else:
                items.append(it)
        blocks.append(items)
    return blocks


ALGOS = ["sha256", "sha256_cbor", "xxhash", "xxhash_cbor", "sha256_cbor_64bit"]
rng = random.Random(7)
cases = []


# Long token lists are generated, not stored: token i = (add + i*mul) % mod.
GEN = {"count": 40000, "add": 70000, "mul": 2654435761, "mod": 2**31}


def generated(n):
    return [(GEN["add"] + i * GEN["mul"]) % GEN["mod"] for i in range(n)]


def add(name, algo, seed, bs, tokens, extra=None, generator=None):
    case = {
        "id": f"{algo}/{name}",
        "hash_algo": algo,
        "seed": seed,
        "block_size": bs,
        "token_ids": None if generator else tokens,
        "token_generator": generator,
        "extra_keys": to_json_extra(extra),
        "expected_block_hashes_u64": block_hashes(algo, seed, bs, tokens, extra),
    }
    cases.append(case)


embed = hashlib.sha256(b"prompt embeds of block 1").digest()
for algo in ALGOS:
    add("empty", algo, "42", 16, [])
    add("bs=1", algo, "42", 1, [0, 1, 255, 256, 65535])
    add("bs=2", algo, "42", 2, [5, 6, 7, 8, 9])
    add("bs=3", algo, "42", 3, list(range(100, 110)))
    add("bs=4", algo, "42", 4, list(range(100, 112)))
    add("bs=256", algo, "42", 256, [rng.randrange(0, 152000) for _ in range(600)])
    add("large-ids", algo, "42", 4, [65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 151643, 23, 24])
    add("seed=0", algo, "0", 16, list(range(32)))
    add("seed=empty", algo, "", 16, list(range(32)))
    add("seed=unicode", algo, "семя-种子", 16, list(range(32)))
    toks = [rng.randrange(0, 200000) for _ in range(64)]
    add("lora_name", algo, "42", 16, toks, [("sql-lora",)] * 4)
    add("lora_int_id", algo, "42", 16, toks, [(3,)] * 4)
    add("cache_salt", algo, "42", 16, toks, [("tenant-a",), None, None, None])
    add("lora+salt", algo, "42", 16, toks, [("sql-lora", "tenant-a"), ("sql-lora",), ("sql-lora",), ("sql-lora",)])
    add("mm_tuple", algo, "42", 16, toks, [(("img-8d4c6b1f", 5),), (("img-8d4c6b1f", -11),), (("vid-" + "x" * 300, -2**40),), None])
    add("mm_bare", algo, "42", 16, toks, [("img-8d4c6b1f",), ("img-8d4c6b1f",), None, None])
    add("prompt_embeds", algo, "42", 16, toks, [None, (embed,), None, None])
    add("long_string", algo, "42", 16, toks, [("L" * 300,), None, None, None])
    if algo in ("sha256", "xxhash"):
        # Large enough that pickle splits its output into several frames.
        add("frames", algo, "42", 20000, generated(40000), generator=GEN)

print(json.dumps({
    "description": "Block hashes from vLLM's recipe with CPython pickle, cbor2 canonical and xxhash (hack/gen-hash-vectors.py)",
    "cases": cases,
}, indent=1))
