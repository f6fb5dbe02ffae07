"""What a router graph may hold: the operators the exporters write, and bounded weights.

A graph of a few KB can ask for gigabytes at run time (``ConstantOfShape([5e8])`` added to
the scores) or declare weights far beyond its encoder's. Every host checks the graph against
these rules at load, before onnxruntime sees it:

* every node's operator is one the exporters of its encoder write (:data:`ALLOWED_OPS`; a
  new exporter or encoder adds its operators here, and ``tests/test_graph_rules.py`` builds
  every exporter's graph and checks it against this list);
* no local functions, subgraphs or sparse initializers (no exporter writes them);
* the operators that make a tensor of a size given by a value (``ConstantOfShape``,
  ``Expand``, ``Tile``, ``Range``, ``OneHot``'s depth) never take that size from a constant:
  in the exported graphs it always comes from the input's shape;
* the initializers and constants together declare at most the bytes the encoder needs
  (:func:`weight_bound`): its weights at 4 bytes each (fp32, the widest precision), the head,
  the uncertainty output's subspace and factors, and 1 MiB for the small constants,
  quantisation scales and decision settings.

The graph is read with a small protobuf walk of ``router.onnx`` (the encoder's weights live
in ``router.onnx.data`` and are not read), so routing still never imports the ``onnx``
package; the Node.js and browser host (``js/src/core.js``) applies the same walk and rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from irde_onnx.encoders import ENCODERS
from irde_onnx.errors import RouterFormatError
from irde_onnx.learning.uncertainty import uncertainty_floats

# the graph tail and head (export/graph.py), the decision policy (policy_graph.py), every
# static strategy (vote, mean, entropy_top_k) and the toy router of tests/toy.py
STATIC_OPS = frozenset(
    {
        "Add",
        "ArgMax",
        "Cast",
        "Clip",
        "Concat",
        "Constant",
        "ConstantOfShape",
        "Div",
        "Gather",
        "GatherElements",
        "Identity",
        "Less",
        "Log",
        "MatMul",
        "Max",
        "Min",
        "Mul",
        "Neg",
        "OneHot",
        "ReduceL2",
        "ReduceSum",
        "ScatterElements",
        "Shape",
        "Softmax",
        "Squeeze",
        "Sub",
        "TopK",
        "Unsqueeze",
        "Where",
    }
)
# MiniLM as optimum exports it (fp32), quantised by onnxruntime (int8), with pooled layers
MINILM_OPS = STATIC_OPS | {
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "Equal",
    "Erf",
    "Expand",
    "LayerNormalization",
    "MatMulInteger",
    "Reshape",
    "Slice",
    "Sqrt",
    "Transpose",
}
# the uncertainty output of the pooled encoders (graph/build.py uncertainty_nodes)
UNCERTAINTY_OPS = frozenset(
    {"Add", "Constant", "MatMul", "ReduceSumSquare", "Reshape", "Sqrt", "Sub"}
)
# the tiny router (graph/build.py tiny_router) writes a subset of the static operators
ALLOWED_OPS: dict[str, frozenset[str]] = {
    "static": STATIC_OPS,
    "minilm": frozenset(MINILM_OPS | UNCERTAINTY_OPS),
    "tiny": STATIC_OPS | UNCERTAINTY_OPS,
}
# operator -> the input positions that give the size of the tensor it makes
SIZE_INPUTS = {
    "ConstantOfShape": (0,),
    "Expand": (1,),
    "Tile": (1,),
    "Range": (0, 1, 2),
    "OneHot": (1,),
}
SLACK_BYTES = 1 << 20
# bytes of one element per ONNX TensorProto.DataType (strings and unknown types are refused)
ELEMENT_BYTES = {
    1: 4,  # FLOAT
    2: 1,  # UINT8
    3: 1,  # INT8
    4: 2,  # UINT16
    5: 2,  # INT16
    6: 4,  # INT32
    7: 8,  # INT64
    9: 1,  # BOOL
    10: 2,  # FLOAT16
    11: 8,  # DOUBLE
    12: 4,  # UINT32
    13: 8,  # UINT64
    16: 2,  # BFLOAT16
}


@dataclass
class GraphSummary:
    """What the rules look at: operators, constant tensor names and declared bytes."""

    ops: list[tuple[str, str]] = field(default_factory=list)  # (domain, op_type) per node
    size_inputs: list[tuple[str, str]] = field(default_factory=list)  # (op_type, input name)
    constants: set[str] = field(default_factory=set)  # initializers and Constant outputs
    tensor_bytes: int = 0
    problems: list[str] = field(default_factory=list)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes, start: int, end: int):  # noqa: ANN202 - a generator of tuples
    """Yield ``(field, wire, value)``; value is an int (varint) or a (start, end) span."""
    pos = start
    while pos < end:
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise ValueError("truncated field")
            yield number, wire, (pos, pos + length)
            pos += length
        else:
            raise ValueError(f"unknown wire type {wire}")
    if pos != end:
        raise ValueError("truncated message")


def _text(buf: bytes, span: tuple[int, int]) -> str:
    return buf[span[0] : span[1]].decode("utf-8", "replace")


def _tensor_bytes(buf: bytes, span: tuple[int, int], summary: GraphSummary) -> int:
    """Bytes a TensorProto declares: the product of its dims times its element size."""
    count, dtype = 1, 1
    for number, wire, value in _fields(buf, *span):
        if number == 1 and wire == 0:
            count *= value
        elif number == 1 and wire == 2:  # packed dims
            pos, end = value
            while pos < end:
                dim, pos = _varint(buf, pos)
                count *= dim
        elif number == 2 and wire == 0:
            dtype = value
    if dtype not in ELEMENT_BYTES:
        summary.problems.append(f"a tensor of ONNX data type {dtype}, which no exporter writes")
        return 0
    return count * ELEMENT_BYTES[dtype]


def _node(buf: bytes, span: tuple[int, int], summary: GraphSummary) -> None:
    inputs, outputs, op, domain = [], [], "", ""
    for number, wire, value in _fields(buf, *span):
        if wire != 2:
            continue
        if number == 1:
            inputs.append(_text(buf, value))
        elif number == 2:
            outputs.append(_text(buf, value))
        elif number == 4:
            op = _text(buf, value)
        elif number == 7:
            domain = _text(buf, value)
        elif number == 5:  # AttributeProto
            for a_number, a_wire, a_value in _fields(buf, *value):
                if a_wire != 2:
                    continue
                if a_number in (5, 10):  # t, tensors
                    summary.tensor_bytes += _tensor_bytes(buf, a_value, summary)
                elif a_number in (6, 11, 22, 23):  # g, graphs, sparse_tensor(s)
                    summary.problems.append(f"a {op or 'node'} with a subgraph or sparse tensor")
    summary.ops.append((domain, op))
    if op == "Constant":
        summary.constants.update(outputs)
    for position in SIZE_INPUTS.get(op, ()):
        if position < len(inputs) and inputs[position]:
            summary.size_inputs.append((op, inputs[position]))


def summarize_graph(data: bytes) -> GraphSummary:
    """Walk the ModelProto bytes of ``router.onnx`` (no onnx package; weights not read).

    Raises:
        ValueError: the bytes are not a protobuf message.

    """
    summary = GraphSummary()
    for number, wire, value in _fields(data, 0, len(data)):
        if number == 25 and wire == 2:
            summary.problems.append("local functions")
        if number != 7 or wire != 2:
            continue
        for g_number, g_wire, g_value in _fields(data, *value):
            if g_wire != 2:
                continue
            if g_number == 1:
                _node(data, g_value, summary)
            elif g_number == 5:
                summary.tensor_bytes += _tensor_bytes(data, g_value, summary)
                for t_number, t_wire, t_value in _fields(data, *g_value):
                    if t_number == 8 and t_wire == 2:
                        summary.constants.add(_text(data, t_value))
            elif g_number == 15:
                summary.problems.append("sparse initializers")
    return summary


def weight_bound(encoder: str, feature_dim: int, n_experts: int, vocab_size: int) -> int:
    """The most bytes the initializers and constants of a router graph may declare.

    The encoder's weights at 4 bytes each (``token_weights`` per vocabulary entry, or the
    router's ``feature_dim`` + 1 for a static table and its token mask, plus
    ``fixed_weights``), the head (``feature_dim`` + 1 per expert, float32), the uncertainty
    output of pooled encoders (:func:`~irde_onnx.learning.uncertainty.uncertainty_floats`)
    and :data:`SLACK_BYTES` for everything small.
    """
    spec = ENCODERS[encoder]
    per_token = spec.token_weights if spec.token_weights is not None else feature_dim + 1
    weights = per_token * vocab_size + spec.fixed_weights + (feature_dim + 1) * n_experts
    if spec.pooled:
        weights += uncertainty_floats(feature_dim, n_experts)
    return 4 * weights + SLACK_BYTES


def graph_problem(
    data: bytes, encoder: str, feature_dim: int, n_experts: int, vocab_size: int
) -> str | None:
    """Why the graph bytes break the rules of this module, or None when they keep them."""
    try:
        summary = summarize_graph(data)
    except ValueError as exc:
        return f"is not a readable ONNX file ({exc})"
    if summary.problems:
        return f"holds {summary.problems[0]}"
    allowed = ALLOWED_OPS[encoder]
    for domain, op in summary.ops:
        if domain not in ("", "ai.onnx") or op not in allowed:
            name = f"{domain}:{op}" if domain else op
            return (
                f"uses the operator {name!r}, which no exporter of the {encoder} encoder writes "
                f"(allowed: {', '.join(sorted(allowed))})"
            )
    for op, name in summary.size_inputs:
        if name in summary.constants:
            return (
                f"gives {op} a constant size ({name!r}); the exported graphs take every such "
                "size from the input's shape"
            )
    bound = weight_bound(encoder, feature_dim, n_experts, vocab_size)
    if summary.tensor_bytes > bound:
        return (
            f"declares {summary.tensor_bytes:,} bytes of weights and constants; a {encoder} "
            f"router with {n_experts} experts needs at most {bound:,}"
        )
    return None


def check_graph(
    data: bytes, source: str, encoder: str, feature_dim: int, n_experts: int, vocab_size: int
) -> None:
    """Raise :class:`RouterFormatError` naming ``source`` when :func:`graph_problem` finds one."""
    problem = graph_problem(data, encoder, feature_dim, n_experts, vocab_size)
    if problem is not None:
        raise RouterFormatError(
            f"{source} {problem}: it is not a graph irde exports; train or export the router "
            "again, or restore a good copy"
        )
