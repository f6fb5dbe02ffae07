"""Build the single router graph (encoder + head) with ``onnx.helper``.

Inputs ``input_ids`` and ``attention_mask`` (int64, [batch, sequence]); output ``scores``
[batch, n_experts] and, for pooled encoders, ``features`` [batch, d]. The head is the
initializers ``head.W`` [d, n_experts] and ``head.b`` [n_experts] (MatMul + Add), so a runtime
can replace them; ``n_experts`` is a symbolic dimension. The editor appends the decision
nodes (``choice``, ``confidence``: :mod:`irde_onnx.decision.nodes`) and, for pooled encoders,
the ``uncertainty`` output [batch, n_experts] (:func:`add_uncertainty`).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from irde_onnx.learning.static_scores import ENTROPY_FLOOR, INVALID_ENTROPY
from irde_onnx.learning.uncertainty import UNCERTAINTY_OUTPUT, SubspaceWidth
from irde_onnx.store.config import HEAD_B, HEAD_W, STATIC_TABLE, STATIC_TOKEN_MASK

OPSET = 18
BATCH, SEQUENCE, N_EXPERTS = "batch", "sequence", "n_experts"


def _const(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))


def head_initializers(w: np.ndarray, b: np.ndarray) -> list[onnx.TensorProto]:
    """``head.W`` and ``head.b`` as float32 initializers."""
    return [
        numpy_helper.from_array(np.ascontiguousarray(w, dtype=np.float32), HEAD_W),
        numpy_helper.from_array(np.ascontiguousarray(b, dtype=np.float32), HEAD_B),
    ]


def _io(d: int | None) -> tuple[list[onnx.ValueInfoProto], list[onnx.ValueInfoProto]]:
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT64, [BATCH, SEQUENCE])
        for n in ("input_ids", "attention_mask")
    ]
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [BATCH, N_EXPERTS])]
    if d is not None:
        outputs.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, [BATCH, d]))
    return inputs, outputs


def _head_nodes(x: str, out: str, prefix: str) -> list[onnx.NodeProto]:
    return [
        helper.make_node("MatMul", [x, HEAD_W], [f"{prefix}/xw"]),
        helper.make_node("Add", [f"{prefix}/xw", HEAD_B], [out]),
    ]


def layer_outputs(bert: onnx.ModelProto, layers: tuple[int, ...]) -> list[str]:
    """Names of the hidden-state tensors of ``layers`` (1..n, n = last) in a BertModel graph.

    Layer ``k``'s output is the output of its last LayerNorm
    (``/encoder/layer.{k-1}/output/LayerNorm/...``, as optimum names it; a fused
    LayerNormalization node or the final Add of a decomposed one). The last layer's is
    ``last_hidden_state``.
    """
    found: dict[int, str] = {}
    for node in bert.graph.node:
        for k in layers:
            prefix = f"/encoder/layer.{k - 1}/output/LayerNorm/"
            if node.name.startswith(prefix) and node.op_type in ("LayerNormalization", "Add"):
                found[k] = node.output[0]  # the last one in graph order wins
    missing = [k for k in layers if k not in found]
    if missing:
        raise ValueError(f"the encoder graph has no output of layer(s) {missing}")
    return [found[k] for k in layers]


def pooled_router(
    bert: onnx.ModelProto, w: np.ndarray, b: np.ndarray, hidden: list[str] | None = None
) -> onnx.ModelProto:
    """Append mean pooling, L2 normalisation and the head to a BertModel graph.

    ``bert`` has inputs input_ids, attention_mask, token_type_ids and the output
    last_hidden_state; token_type_ids becomes an in-graph tensor of zeros. ``hidden`` names
    the hidden-state tensors to pool (default: ``last_hidden_state``); each is mean-pooled
    over the attention mask and L2-normalised on its own, and the blocks are concatenated
    in the order given into ``features``, shape (batch, d) with d = 384 x blocks.
    """
    g = bert.graph
    d = int(w.shape[0])
    hidden = ["last_hidden_state"] if hidden is None else list(hidden)
    names = [i.name for i in g.input]
    if "last_hidden_state" not in [o.name for o in g.output]:
        raise ValueError("the encoder graph has no last_hidden_state output")
    front: list[onnx.NodeProto] = []
    if "token_type_ids" in names:
        front = [
            helper.make_node("Shape", ["input_ids"], ["irde/ids_shape"]),
            helper.make_node(
                "ConstantOfShape",
                ["irde/ids_shape"],
                ["token_type_ids"],
                value=helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
            ),
        ]
    tail = [
        _const("irde/axis1", np.array([1], np.int64)),
        _const("irde/axis_last", np.array([-1], np.int64)),
        _const("irde/eps_count", np.array(1e-9, np.float32)),
        _const("irde/eps_norm", np.array(1e-12, np.float32)),
        helper.make_node("Cast", ["attention_mask"], ["irde/mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["irde/mask_f", "irde/axis_last"], ["irde/mask3"]),
        helper.make_node("ReduceSum", ["irde/mask3", "irde/axis1"], ["irde/count"], keepdims=0),
        helper.make_node("Max", ["irde/count", "irde/eps_count"], ["irde/count_c"]),
    ]
    blocks = []
    for j, tensor in enumerate(hidden):
        # one block keeps the names of the graphs exported before several layers existed
        p = "irde/" if len(hidden) == 1 else f"irde/block{j}/"
        out = "features" if len(hidden) == 1 else f"{p}features"
        tail += [
            helper.make_node("Mul", [tensor, "irde/mask3"], [f"{p}masked"]),
            helper.make_node("ReduceSum", [f"{p}masked", "irde/axis1"], [f"{p}sum"], keepdims=0),
            helper.make_node("Div", [f"{p}sum", "irde/count_c"], [f"{p}mean"]),
            helper.make_node("ReduceL2", [f"{p}mean", "irde/axis_last"], [f"{p}norm"], keepdims=1),
            helper.make_node("Max", [f"{p}norm", "irde/eps_norm"], [f"{p}norm_c"]),
            helper.make_node("Div", [f"{p}mean", f"{p}norm_c"], [out]),
        ]
        blocks.append(out)
    if len(blocks) > 1:
        tail.append(helper.make_node("Concat", blocks, ["features"], axis=1))
    tail += _head_nodes("features", "scores", "head")
    nodes = front + list(g.node) + tail
    inputs, outputs = _io(d)
    graph = helper.make_graph(
        nodes,
        "irde_router",
        inputs,
        outputs,
        initializer=list(g.initializer) + head_initializers(w, b),
    )
    model = helper.make_model(
        graph, opset_imports=list(bert.opset_import), producer_name="irde-onnx"
    )
    model.ir_version = bert.ir_version
    return model


def static_router(
    table: np.ndarray,
    token_mask: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    strategy: str,
    top_k_tokens: int = 10,
) -> onnx.ModelProto:
    """The paper's token-level router: Gather -> head per token (or mean-pooled) -> vote.

    Mirrors :func:`irde_onnx.learning.static_scores.static_scores` node for node.
    """
    f32 = TensorProto.FLOAT
    nodes = [
        _const("axis1", np.array([1], np.int64)),
        _const("axis_last", np.array([-1], np.int64)),
        _const("one", np.array(1.0, np.float32)),
        helper.make_node("Gather", [STATIC_TABLE, "input_ids"], ["emb_raw"]),
        helper.make_node("Cast", ["emb_raw"], ["emb"], to=f32),
        helper.make_node("Gather", [STATIC_TOKEN_MASK, "input_ids"], ["tok_valid"]),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=f32),
        helper.make_node("Mul", ["tok_valid", "mask_f"], ["valid"]),
        helper.make_node("Unsqueeze", ["valid", "axis_last"], ["valid3"]),
        helper.make_node("ReduceSum", ["valid", "axis1"], ["n"], keepdims=1),
        helper.make_node("Max", ["n", "one"], ["n_c"]),
        helper.make_node("Mul", ["emb", "valid3"], ["emb_masked"]),
        helper.make_node("ReduceSum", ["emb_masked", "axis1"], ["emb_sum"], keepdims=0),
        helper.make_node("Div", ["emb_sum", "n_c"], ["pooled"]),
    ]
    if strategy == "mean":
        nodes += _head_nodes("pooled", "scores", "head")
    else:
        nodes += _head_nodes("pooled", "mean_scores", "head")
        nodes += [
            helper.make_node("MatMul", ["emb", HEAD_W], ["tok_xw"]),
            helper.make_node("Add", ["tok_xw", HEAD_B], ["tok"]),
            helper.make_node("ArgMax", ["tok"], ["best"], axis=-1, keepdims=0),
            # depth from a computed tensor, not Shape(head.b): onnxruntime folds a Shape of
            # an initializer into a constant, which would outlive a swapped head
            _const("axis2", np.array(2, np.int64)),
            helper.make_node("Shape", ["tok"], ["tok_shape"]),
            helper.make_node("Gather", ["tok_shape", "axis2"], ["n_experts"]),
            _const("onehot_values", np.array([0.0, 1.0], np.float32)),
            helper.make_node("OneHot", ["best", "n_experts", "onehot_values"], ["onehot"], axis=-1),
        ]
        voters = "valid"
        if strategy == "entropy_top_k":
            nodes += [
                _const("entropy_floor", np.array(ENTROPY_FLOOR, np.float32)),
                _const("invalid_entropy", np.array(INVALID_ENTROPY, np.float32)),
                _const("k_tokens", np.array([top_k_tokens], np.int64)),
                helper.make_node("Softmax", ["tok"], ["p"], axis=-1),
                helper.make_node("Max", ["p", "entropy_floor"], ["p_c"]),
                helper.make_node("Log", ["p_c"], ["logp"]),
                helper.make_node("Mul", ["p", "logp"], ["plogp"]),
                helper.make_node("ReduceSum", ["plogp", "axis_last"], ["neg_ent"], keepdims=0),
                helper.make_node("Neg", ["neg_ent"], ["ent"]),
                helper.make_node("Sub", ["one", "valid"], ["invalid"]),
                helper.make_node("Mul", ["invalid", "invalid_entropy"], ["ent_pen"]),
                helper.make_node("Add", ["ent", "ent_pen"], ["ent_masked"]),
                helper.make_node("Shape", ["input_ids"], ["ids_shape"]),
                helper.make_node("Gather", ["ids_shape", "axis1"], ["seq_len"]),
                helper.make_node("Min", ["k_tokens", "seq_len"], ["k_eff"]),
                helper.make_node(
                    "TopK",
                    ["ent_masked", "k_eff"],
                    ["_ent_top", "sel"],
                    axis=1,
                    largest=0,
                    sorted=1,
                ),
                helper.make_node("GatherElements", ["valid", "sel"], ["sel_valid"], axis=1),
                helper.make_node(
                    "ConstantOfShape",
                    ["ids_shape"],
                    ["zeros_bs"],
                    value=helper.make_tensor("z", f32, [1], [0.0]),
                ),
                helper.make_node(
                    "ScatterElements", ["zeros_bs", "sel", "sel_valid"], ["voters"], axis=1
                ),
            ]
            voters = "voters"
        nodes += [
            helper.make_node("Unsqueeze", [voters, "axis_last"], ["voters3"]),
            helper.make_node("Mul", ["onehot", "voters3"], ["onehot_v"]),
            helper.make_node("ReduceSum", ["onehot_v", "axis1"], ["votes"], keepdims=0),
            helper.make_node("ReduceSum", [voters, "axis1"], ["nv"], keepdims=1),
            helper.make_node("Max", ["nv", "one"], ["nv_c"]),
            helper.make_node("Div", ["votes", "nv_c"], ["share"]),
            helper.make_node("Softmax", ["mean_scores"], ["mean_p"], axis=1),
            helper.make_node("Add", ["nv", "one"], ["nv1"]),
            helper.make_node("Div", ["mean_p", "nv1"], ["tiebreak"]),
            helper.make_node("Add", ["share", "tiebreak"], ["scores"]),
        ]
    inputs, outputs = _io(None)
    inits = [
        numpy_helper.from_array(np.ascontiguousarray(table), STATIC_TABLE),
        numpy_helper.from_array(np.asarray(token_mask, np.float32), STATIC_TOKEN_MASK),
        *head_initializers(w, b),
    ]
    graph = helper.make_graph(nodes, "irde_static_router", inputs, outputs, initializer=inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="irde-onnx"
    )
    model.ir_version = 9
    return model


# initializers of the tiny graph (besides head.W / head.b)
TINY_ID_MAP, TINY_ROWS, TINY_SCALE, TINY_WEIGHT = (
    "tiny.id_map",
    "tiny.rows",
    "tiny.scale",
    "tiny.weight",
)


def tiny_router(
    table_rows: np.ndarray,
    id_map: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    row_weight: np.ndarray,
    scale: np.ndarray | None = None,
    normalize: bool = True,
) -> onnx.ModelProto:
    """The tiny router: id remap -> Gather of kept rows -> masked mean -> (L2) -> head.

    Mirrors :func:`irde_onnx.learning.tiny_features.tiny_scores` node for node.

    Args:
        table_rows: (R, k) kept rows as stored: float16, float32, or int8 with ``scale``.
        id_map: (vocab,) int16, int32 or int64, the row of each vocabulary id (tokens outside the
            kept vocabulary share one row; special tokens read a row of ``row_weight`` 0).
        w: (k, n_experts) head weights.
        b: (n_experts,) head bias.
        row_weight: (R,) uint8 (or float32): 1 for rows counted in the mean, 0 otherwise.
        scale: (R,) float32 per-row scale of int8 rows; None for float rows.
        normalize: L2-normalise the pooled features (as the MiniLM graph does).

    Returns:
        The graph, with outputs ``scores`` (batch, n_experts) and ``features`` (batch, k).

    """
    f32 = TensorProto.FLOAT
    rows = np.ascontiguousarray(table_rows)
    if rows.dtype == np.int8 and scale is None:
        raise ValueError("int8 rows need a per-row scale")
    if rows.dtype not in (np.int8, np.float16, np.float32):
        raise ValueError(f"table rows must be int8, float16 or float32, not {rows.dtype}")
    id_map = np.ascontiguousarray(id_map)
    if id_map.dtype not in (np.int16, np.int32, np.int64):
        raise ValueError(f"id_map must be int16, int32 or int64, not {id_map.dtype}")
    d = int(rows.shape[1])
    nodes = [
        _const("tiny/axis1", np.array([1], np.int64)),
        _const("tiny/axis_last", np.array([-1], np.int64)),
        _const("tiny/one", np.array(1.0, np.float32)),
        helper.make_node("Gather", [TINY_ID_MAP, "input_ids"], ["tiny/row_raw"]),
        # Gather takes int32/int64 indices: an int16 map (half the bytes) is widened
        helper.make_node("Cast", ["tiny/row_raw"], ["tiny/row"], to=TensorProto.INT32),
        helper.make_node("Gather", [TINY_ROWS, "tiny/row"], ["tiny/emb_raw"]),
        helper.make_node("Cast", ["tiny/emb_raw"], ["tiny/emb"], to=f32),
        helper.make_node("Gather", [TINY_WEIGHT, "tiny/row"], ["tiny/weight_raw"]),
        helper.make_node("Cast", ["tiny/weight_raw"], ["tiny/weight"], to=f32),
        helper.make_node("Cast", ["attention_mask"], ["tiny/mask_f"], to=f32),
        helper.make_node("Mul", ["tiny/weight", "tiny/mask_f"], ["tiny/valid"]),
        helper.make_node("ReduceSum", ["tiny/valid", "tiny/axis1"], ["tiny/n"], keepdims=1),
        helper.make_node("Max", ["tiny/n", "tiny/one"], ["tiny/n_c"]),
    ]
    factor = "tiny/valid"
    if scale is not None:
        nodes += [
            helper.make_node("Gather", [TINY_SCALE, "tiny/row"], ["tiny/scale"]),
            helper.make_node("Mul", ["tiny/valid", "tiny/scale"], ["tiny/factor"]),
        ]
        factor = "tiny/factor"
    pooled = "features" if not normalize else "tiny/pooled"
    nodes += [
        helper.make_node("Unsqueeze", [factor, "tiny/axis_last"], ["tiny/factor3"]),
        helper.make_node("Mul", ["tiny/emb", "tiny/factor3"], ["tiny/emb_masked"]),
        helper.make_node("ReduceSum", ["tiny/emb_masked", "tiny/axis1"], ["tiny/sum"], keepdims=0),
        helper.make_node("Div", ["tiny/sum", "tiny/n_c"], [pooled]),
    ]
    if normalize:
        nodes += [
            _const("tiny/eps_norm", np.array(1e-12, np.float32)),
            helper.make_node("ReduceL2", [pooled, "tiny/axis_last"], ["tiny/norm"], keepdims=1),
            helper.make_node("Max", ["tiny/norm", "tiny/eps_norm"], ["tiny/norm_c"]),
            helper.make_node("Div", [pooled, "tiny/norm_c"], ["features"]),
        ]
    nodes += _head_nodes("features", "scores", "head")
    inputs, outputs = _io(d)
    inits = [
        numpy_helper.from_array(id_map, TINY_ID_MAP),
        numpy_helper.from_array(rows, TINY_ROWS),
        numpy_helper.from_array(np.ascontiguousarray(row_weight), TINY_WEIGHT),
        *head_initializers(w, b),
    ]
    if scale is not None:
        inits.append(numpy_helper.from_array(np.asarray(scale, np.float32), TINY_SCALE))
    graph = helper.make_graph(nodes, "irde_tiny_router", inputs, outputs, initializer=inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="irde-onnx"
    )
    model.ir_version = 9
    return model


# initializers of the uncertainty output (learning/uncertainty.py, SubspaceWidth.graph_arrays)
UNCERTAINTY_INITIALIZERS = {
    "mu": "uncertainty.mu",
    "basis": "uncertainty.basis",
    "factors": "uncertainty.factors",
    "offset": "uncertainty.offset",
}


def has_uncertainty(model: onnx.ModelProto) -> bool:
    """True when the graph already has the ``uncertainty`` output."""
    return any(o.name == UNCERTAINTY_OUTPUT for o in model.graph.output)


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), OPSET)


def uncertainty_nodes(rank: int, opset: int = OPSET) -> list[onnx.NodeProto]:
    """Nodes from ``features`` to ``uncertainty`` (batch, n_experts): ``||L_e z||`` per expert.

    ``(features - mu) @ basis @ factors + offset`` holds ``L_e z`` in block ``e`` of ``rank + 1``
    columns; Reshape to (batch, n_experts, rank + 1), ReduceSumSquare, Sqrt. Every node takes
    a tensor computed from the prompt, so onnxruntime folds none of the initializers.
    """
    names = UNCERTAINTY_INITIALIZERS
    nodes = [
        _const("uncertainty/shape", np.array([0, -1, rank + 1], np.int64)),
        helper.make_node("Sub", ["features", names["mu"]], ["uncertainty/centred"]),
        helper.make_node("MatMul", ["uncertainty/centred", names["basis"]], ["uncertainty/z"]),
        helper.make_node("MatMul", ["uncertainty/z", names["factors"]], ["uncertainty/lz"]),
        helper.make_node("Add", ["uncertainty/lz", names["offset"]], ["uncertainty/v"]),
        helper.make_node("Reshape", ["uncertainty/v", "uncertainty/shape"], ["uncertainty/v3"]),
    ]
    if opset >= 18:  # axes became an input in opset 18
        nodes += [
            _const("uncertainty/axis2", np.array([2], np.int64)),
            helper.make_node(
                "ReduceSumSquare",
                ["uncertainty/v3", "uncertainty/axis2"],
                ["uncertainty/sq"],
                keepdims=0,
            ),
        ]
    else:
        nodes.append(
            helper.make_node(
                "ReduceSumSquare", ["uncertainty/v3"], ["uncertainty/sq"], axes=[2], keepdims=0
            )
        )
    nodes.append(helper.make_node("Sqrt", ["uncertainty/sq"], [UNCERTAINTY_OUTPUT]))
    return nodes


def uncertainty_initializers(width: SubspaceWidth) -> list[onnx.TensorProto]:
    """The float32 initializers of ``width`` (:meth:`SubspaceWidth.graph_arrays`)."""
    arrays = width.graph_arrays()
    return [
        numpy_helper.from_array(arrays[k], name) for k, name in UNCERTAINTY_INITIALIZERS.items()
    ]


def add_uncertainty(model: onnx.ModelProto, width: SubspaceWidth) -> None:
    """Give a pooled router graph the ``uncertainty`` output of ``width``, in place.

    A graph that already has it (of the same rank) gets its initializers rewritten, as the
    head's are; the encoder is not touched.
    """
    g = model.graph
    if not any(o.name == "features" for o in g.output):
        raise ValueError("the uncertainty output needs a graph with the features output")
    if has_uncertainty(model):
        rank = next(
            int(numpy_helper.to_array(n.attribute[0].t)[2]) - 1
            for n in g.node
            if n.output and n.output[0] == "uncertainty/shape"
        )
        if rank == width.rank:
            values = {t.name: t for t in uncertainty_initializers(width)}
            for tensor in g.initializer:
                if tensor.name in values:
                    tensor.CopyFrom(values[tensor.name])
            return
        remove_uncertainty(model)
    g.node.extend(uncertainty_nodes(width.rank, _opset(model)))
    g.initializer.extend(uncertainty_initializers(width))
    g.output.append(
        helper.make_tensor_value_info(UNCERTAINTY_OUTPUT, TensorProto.FLOAT, [BATCH, N_EXPERTS])
    )


def remove_uncertainty(model: onnx.ModelProto) -> None:
    """Drop the ``uncertainty`` output, its nodes and initializers (a graph saved before it)."""
    g = model.graph
    keep_out = [o for o in g.output if o.name != UNCERTAINTY_OUTPUT]
    del g.output[:]
    g.output.extend(keep_out)
    keep_nodes = [
        n
        for n in g.node
        if not all(o.startswith("uncertainty/") or o == UNCERTAINTY_OUTPUT for o in n.output)
    ]
    del g.node[:]
    g.node.extend(keep_nodes)
    dropped = set(UNCERTAINTY_INITIALIZERS.values())
    keep_inits = [t for t in g.initializer if t.name not in dropped]
    del g.initializer[:]
    g.initializer.extend(keep_inits)
