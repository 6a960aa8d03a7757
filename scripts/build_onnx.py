"""Builds the ONNX graph of all-MiniLM-L6-v2 (BERT + mean pooling + L2 normalisation)
straight from its safetensors weights, without PyTorch, then checks it.

The graph follows the shapes a torch export emits (GELU as Div(x, sqrt 2) -> Erf, the
attention scale as a Div, the additive mask as Unsqueeze -> Unsqueeze -> Cast -> Sub ->
Mul), because ONNX Runtime only fuses those shapes into its fast kernels.

Checks, before the file is used: onnx.checker, then ONNX Runtime's output against a
plain numpy forward pass of the same weights on a few sentences (cosine >= 0.99999).

Usage: build_onnx.py MODEL_DIR   (reads config.json, model.safetensors; writes model.onnx)
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

OPSET = 17


def build(model_dir: Path) -> onnx.ModelProto:
    config = json.loads((model_dir / "config.json").read_text())
    weights = load_file(str(model_dir / "model.safetensors"))
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    head_dim = hidden // heads
    eps = config["layer_norm_eps"]

    nodes, inits = [], []

    def init(name, array):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def const(name, value, dtype=np.float32):
        return init(name, np.array(value, dtype=dtype))

    def node(op, inputs, output, **attrs):
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def linear(x, prefix, out):
        w = init(f"{prefix}.weight_t", weights[f"{prefix}.weight"].T)
        b = init(f"{prefix}.bias", weights[f"{prefix}.bias"])
        return node("Add", [node("MatMul", [x, w], f"{out}_mm"), b], out)

    def layer_norm(x, prefix, out):
        g = init(f"{prefix}.weight", weights[f"{prefix}.weight"])
        b = init(f"{prefix}.bias", weights[f"{prefix}.bias"])
        return node("LayerNormalization", [x, g, b], out, axis=-1, epsilon=eps)

    # Embeddings: word + position + token type, then LayerNorm.
    shape = node("Shape", ["input_ids"], "ids_shape")
    seq_len = node("Gather", [shape, const("one_i64", [1], np.int64)], "seq_len", axis=0)
    word = node("Gather", [init("word_embeddings", weights["embeddings.word_embeddings.weight"]), "input_ids"], "word_emb")
    # The first S rows of the position table, as a torch export slices its position ids.
    pos_table = init("position_embeddings", weights["embeddings.position_embeddings.weight"])
    pos = node("Slice", [pos_table, const("zero_i64", [0], np.int64), seq_len, const("axis0", [0], np.int64)], "pos_emb")
    tok = node("Gather", [init("token_type_embeddings", weights["embeddings.token_type_embeddings.weight"]), "token_type_ids"], "type_emb")
    x = node("Add", [node("Add", [word, pos], "word_pos"), tok], "emb_sum")
    x = layer_norm(x, "embeddings.LayerNorm", "emb_out")

    # Additive attention mask, as torch emits it: (1 - mask) * float.min, shape [B, 1, 1, S].
    m = node("Unsqueeze", ["attention_mask", const("axis1", [1], np.int64)], "mask_u1")
    m = node("Unsqueeze", [m, const("axis2", [2], np.int64)], "mask_u2")
    m = node("Cast", [m], "mask_f", to=TensorProto.FLOAT)
    m = node("Sub", [const("one_f", 1.0), m], "mask_inv")
    ext_mask = node("Mul", [m, const("f32_min", np.finfo(np.float32).min)], "ext_mask")

    split_heads = const("split_heads", [0, 0, heads, head_dim], np.int64)
    merge_heads = const("merge_heads", [0, 0, hidden], np.int64)
    scale = const("attn_scale", math.sqrt(head_dim))
    sqrt2 = const("sqrt2", math.sqrt(2.0))
    half = const("half", 0.5)

    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q = node("Transpose", [node("Reshape", [linear(x, f"{p}.attention.self.query", f"l{i}_q"), split_heads], f"l{i}_qr")], f"l{i}_qt", perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [linear(x, f"{p}.attention.self.key", f"l{i}_k"), split_heads], f"l{i}_kr")], f"l{i}_kt", perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [linear(x, f"{p}.attention.self.value", f"l{i}_v"), split_heads], f"l{i}_vr")], f"l{i}_vt", perm=[0, 2, 1, 3])
        scores = node("Div", [node("MatMul", [q, k], f"l{i}_qk"), scale], f"l{i}_scaled")
        scores = node("Add", [scores, ext_mask], f"l{i}_masked")
        probs = node("Softmax", [scores], f"l{i}_probs", axis=-1)
        ctx = node("Transpose", [node("MatMul", [probs, v], f"l{i}_ctx")], f"l{i}_ctxt", perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, merge_heads], f"l{i}_ctxm")
        attn = linear(ctx, f"{p}.attention.output.dense", f"l{i}_attn")
        x1 = layer_norm(node("Add", [attn, x], f"l{i}_res1"), f"{p}.attention.output.LayerNorm", f"l{i}_ln1")
        inter = linear(x1, f"{p}.intermediate.dense", f"l{i}_inter")
        erf = node("Erf", [node("Div", [inter, sqrt2], f"l{i}_gdiv")], f"l{i}_erf")
        gated = node("Mul", [inter, node("Add", [erf, "one_f"], f"l{i}_erf1")], f"l{i}_gmul")
        gelu = node("Mul", [gated, half], f"l{i}_gelu")
        out = linear(gelu, f"{p}.output.dense", f"l{i}_out")
        x = layer_norm(node("Add", [out, x1], f"l{i}_res2"), f"{p}.output.LayerNorm", f"l{i}_ln2")

    # Mean pooling over real tokens, then L2 normalisation (sentence-transformers' modules).
    mask3 = node("Unsqueeze", [node("Cast", ["attention_mask"], "pool_mask_f", to=TensorProto.FLOAT), const("axis_last", [2], np.int64)], "pool_mask")
    summed = node("ReduceSum", [node("Mul", [x, mask3], "masked_tokens"), "axis1"], "token_sum", keepdims=0)
    count = node("ReduceSum", [mask3, "axis1"], "token_count", keepdims=0)
    count = node("Clip", [count, const("min_count", 1e-9)], "token_count_c")
    mean = node("Div", [summed, count], "mean_pooled")
    norm = node("ReduceL2", [mean], "l2", axes=[1], keepdims=1)
    norm = node("Clip", [norm, const("min_norm", 1e-12)], "l2_c")
    node("Div", [mean, norm], "sentence_embedding")

    int_input = lambda name: helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
    graph = helper.make_graph(
        nodes,
        "all-minilm-l6-v2",
        [int_input("input_ids"), int_input("attention_mask"), int_input("token_type_ids")],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden])],
        inits,
    )
    opset = [helper.make_opsetid("", OPSET)]
    model = helper.make_model(graph, opset_imports=opset, producer_name="inferpush")
    model.ir_version = helper.find_min_ir_version_for(opset)
    onnx.checker.check_model(model)
    return model


def numpy_forward(model_dir: Path, ids, mask, types):
    """The same network in plain numpy: an independent check of the graph."""
    config = json.loads((model_dir / "config.json").read_text())
    w = load_file(str(model_dir / "model.safetensors"))
    heads, hidden, eps = config["num_attention_heads"], config["hidden_size"], config["layer_norm_eps"]
    hd = hidden // heads

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w[f"{p}.weight"] + w[f"{p}.bias"]

    def lin(x, p):
        return x @ w[f"{p}.weight"].T + w[f"{p}.bias"]

    erf = np.vectorize(math.erf)
    b, s = ids.shape
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][np.arange(s)] + w["embeddings.token_type_embeddings.weight"][types]
    x = ln(x, "embeddings.LayerNorm")
    ext = (1.0 - mask[:, None, None, :].astype(np.float32)) * np.finfo(np.float32).min
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        split = lambda t: t.reshape(b, s, heads, hd).transpose(0, 2, 1, 3)
        q, k, v = (split(lin(x, f"{p}.attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd) + ext
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, s, hidden)
        x1 = ln(lin(ctx, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
        inter = lin(x1, f"{p}.intermediate.dense")
        gelu = 0.5 * inter * (1.0 + erf(inter / math.sqrt(2.0)))
        x = ln(lin(gelu, f"{p}.output.dense") + x1, f"{p}.output.LayerNorm")
    m = mask[:, :, None].astype(np.float32)
    mean = (x * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
    return mean / np.clip(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12, None)


def check(model_dir: Path, onnx_path: Path) -> float:
    import onnxruntime as ort

    # Token ids of a few short sentences of different lengths (padding included).
    ids = np.array([[101, 7592, 2088, 102, 0, 0], [101, 1996, 4937, 2938, 2006, 102], [101, 2748, 102, 0, 0, 0]], dtype=np.int64)
    mask = (ids != 0).astype(np.int64)
    types = np.zeros_like(ids)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]
    want = numpy_forward(model_dir, ids, mask, types)
    cosine = float((got * want).sum(1).min())
    return cosine


def main() -> None:
    model_dir = Path(sys.argv[1])
    out = model_dir / "model.onnx"
    tmp = model_dir / "model.onnx.tmp"
    model = build(model_dir)
    onnx.save(model, str(tmp))
    cosine = check(model_dir, tmp)
    if cosine < 0.99999:
        tmp.unlink()
        sys.exit(f"error: the ONNX graph disagrees with the numpy reference (min cosine {cosine:.6f})")
    tmp.rename(out)
    print(f"built {out}: {len(model.graph.node)} nodes, opset {OPSET}, IR {model.ir_version}; min cosine vs numpy {cosine:.7f}")


if __name__ == "__main__":
    main()
