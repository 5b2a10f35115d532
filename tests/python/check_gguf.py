#!/usr/bin/env python3
"""Checks a pai model.gguf with the `gguf` package (the one llama.cpp ships).

usage: check_gguf.py MODEL_GGUF WEIGHTS_SAFETENSORS

Reads MODEL_GGUF with gguf.GGUFReader: the gpt2 keys, the tensor names, types and shapes.
Then, for every tensor, takes pai's fp32 weights from WEIGHTS_SAFETENSORS (Hugging Face GPT-2
names; Conv1D weights transposed back to (out, in)) and encodes them with `gguf.quants.quantize`
in the tensor's type: Q8_0, F16 and F32 must be byte-identical, Q4_0 identical in at least
99.99 % of blocks (each differing block is printed with why). Exits 1 on any failure.
"""

import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from safetensors.numpy import load_file

BLOCK_BYTES = {T.Q8_0: 34, T.Q4_0: 18}
HF_PART = {
    "attn_norm": "ln_1",
    "attn_qkv": "attn.c_attn",
    "attn_output": "attn.c_proj",
    "ffn_norm": "ln_2",
    "ffn_up": "mlp.c_fc",
    "ffn_down": "mlp.c_proj",
}
CONV1D = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
FILE_TYPE = {T.F32: 0, T.F16: 1, T.Q4_0: 2, T.Q8_0: 7}


def hf_name(name: str) -> str:
    stem, leaf = name.rsplit(".", 1)
    if stem in ("token_embd", "output"):
        return "transformer.wte." + leaf
    if stem == "position_embd":
        return "transformer.wpe." + leaf
    if stem == "output_norm":
        return "transformer.ln_f." + leaf
    _, n, part = stem.split(".")
    return f"transformer.h.{n}.{HF_PART[part]}.{leaf}"


def field(reader, key):
    f = reader.get_field(key)
    if f is None:
        raise SystemExit(f"FAIL: key {key} is missing")
    return f.contents()


def main() -> int:
    path, weights_path = sys.argv[1], sys.argv[2]
    r = gguf.GGUFReader(path)
    w = load_file(weights_path)
    failures = []

    # Keys llama.cpp needs.
    assert field(r, "general.architecture") == "gpt2"
    n_embd = field(r, "gpt2.embedding_length")
    n_layer = field(r, "gpt2.block_count")
    ctx = field(r, "gpt2.context_length")
    assert field(r, "gpt2.feed_forward_length") == 4 * n_embd
    n_head = field(r, "gpt2.attention.head_count")
    eps = field(r, "gpt2.attention.layer_norm_epsilon")
    assert abs(eps - 1e-5) < 1e-9, eps
    assert field(r, "general.quantization_version") == 2
    assert field(r, "tokenizer.ggml.model") == "gpt2"
    assert field(r, "tokenizer.ggml.pre") == "gpt-2"
    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type")
    merges = field(r, "tokenizer.ggml.merges")
    eos = field(r, "tokenizer.ggml.eos_token_id")
    assert field(r, "tokenizer.ggml.bos_token_id") == eos
    assert len(set(tokens)) == len(tokens) == len(types), "tokens must be unique"
    assert tokens[eos] == "<|endoftext|>" and types[eos] == 3
    assert all(len(m.split(" ")) == 2 for m in merges)
    for key in ("gpt2.context_length", "gpt2.block_count", "tokenizer.ggml.eos_token_id"):
        assert r.get_field(key).types == [gguf.GGUFValueType.UINT32], key
    vocab = len(tokens)
    print(
        f"{path}: gpt2 n_embd={n_embd} n_layer={n_layer} n_head={n_head} context={ctx} "
        f"vocab={vocab} merges={len(merges)} tensors={len(r.tensors)}"
    )

    # Tensor names and shapes (GGUFReader gives the dims contiguous first).
    c = n_embd
    want = {
        "token_embd.weight": [c, vocab],
        "position_embd.weight": [c, ctx],
        "output_norm.weight": [c],
        "output_norm.bias": [c],
        "output.weight": [c, vocab],
    }
    for n in range(n_layer):
        for part, shape in [
            ("attn_norm", [c]),
            ("attn_qkv", [c, 3 * c]),
            ("attn_output", [c, c]),
            ("ffn_norm", [c]),
            ("ffn_up", [c, 4 * c]),
            ("ffn_down", [4 * c, c]),
        ]:
            want[f"blk.{n}.{part}.weight"] = shape
            bias = [shape[-1]] if len(shape) == 2 else shape
            want[f"blk.{n}.{part}.bias"] = bias
    got = {t.name: [int(d) for d in t.shape] for t in r.tensors}
    if got != want:
        failures.append(f"tensor names/shapes differ: extra {set(got) - set(want)}, "
                        f"missing {set(want) - set(got)}, "
                        f"shapes {[(k, got[k], want[k]) for k in got if k in want and got[k] != want[k]]}")

    file_types = {t.tensor_type for t in r.tensors if len(t.shape) == 2}
    assert len(file_types) == 1, file_types
    (mtype,) = file_types
    assert field(r, "general.file_type") == FILE_TYPE[mtype]

    compared = differing = 0
    for t in r.tensors:
        x = w[hf_name(t.name)].astype(np.float32)
        hf = hf_name(t.name)
        if x.ndim == 2 and any(p in hf for p in CONV1D):
            x = x.T  # Conv1D (in, out) → pai's (out, in) = ggml [in, out]
        x = np.ascontiguousarray(x)
        if x.ndim == 1 and t.tensor_type != T.F32:
            failures.append(f"{t.name}: 1-D tensor of type {t.tensor_type.name}, expected F32")
            continue
        ref = gguf.quants.quantize(x, t.tensor_type)
        data = np.asarray(t.data)
        a = ref.reshape(-1).view(np.uint8)
        b = data.reshape(-1).view(np.uint8)
        if a.shape != b.shape:
            failures.append(f"{t.name}: {b.size} bytes in the file, {a.size} from gguf.quants")
            continue
        if t.tensor_type in BLOCK_BYTES:
            bb = BLOCK_BYTES[t.tensor_type]
            blocks_a, blocks_b = a.reshape(-1, bb), b.reshape(-1, bb)
            diff = np.nonzero((blocks_a != blocks_b).any(axis=1))[0]
            compared += blocks_a.shape[0]
            differing += diff.size
            xb = x.reshape(-1, 32)
            for i in diff[:5]:
                da = np.frombuffer(blocks_a[i, :2].tobytes(), np.float16)[0]
                db = np.frombuffer(blocks_b[i, :2].tobytes(), np.float16)[0]
                why = "scale d differs" if da != db else "a quant rounds the other way (a tie at .5)"
                print(f"  {t.name} block {i}: {why}; pai {blocks_b[i].tobytes().hex()} "
                      f"gguf {blocks_a[i].tobytes().hex()} x={xb[i].tolist()}")
            if t.tensor_type == T.Q8_0 and diff.size:
                failures.append(f"{t.name}: {diff.size} Q8_0 blocks differ (must be byte-identical)")
        elif not np.array_equal(a, b):
            failures.append(f"{t.name}: {t.tensor_type.name} bytes differ")

    if compared:
        share = 1 - differing / compared
        print(f"{mtype.name}: {compared} blocks compared, {differing} differ "
              f"({100 * share:.4f} % identical)")
        if mtype == T.Q4_0 and share < 0.9999:
            failures.append(f"Q4_0: only {100 * share:.4f} % of blocks identical (need 99.99 %)")
    else:
        print(f"{mtype.name}: every tensor byte-identical to gguf.quants")
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
