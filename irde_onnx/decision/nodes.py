"""The decision rule as ONNX nodes after ``scores``: outputs ``choice`` and ``confidence``.

Mirrors :func:`irde_onnx.decision.policy.decide` node for node. The settings are initializers
(``policy.costs`` [n_experts], ``policy.inv_wtp``, ``policy.inv_temperature``,
``policy.min_confidence`` [1] float32 and ``policy.fallback`` [1] int64) that the runtime
replaces through ``SessionOptions.add_initializer`` like the head. onnxruntime folds nodes
whose inputs are all initializers into constants *before* such a replacement, so every
policy node here takes a tensor computed from the prompt as one of its inputs.
Needs the ``onnx`` package (a base dependency that routing alone never imports).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from irde_onnx.decision.policy import (
    POLICY_COSTS,
    POLICY_FALLBACK,
    POLICY_INV_TEMPERATURE,
    POLICY_INV_WTP,
    POLICY_MIN_CONFIDENCE,
    Policy,
)

CHOICE, CONFIDENCE = "choice", "confidence"


def has_policy(model: onnx.ModelProto) -> bool:
    """True when the graph already has the ``choice`` output."""
    return any(o.name == CHOICE for o in model.graph.output)


def policy_nodes(target: str) -> list[onnx.NodeProto]:
    """Nodes from ``scores`` to ``choice`` and ``confidence`` for a ``domain`` or ``score`` router.

    Their inputs are the graph's ``scores`` and the policy initializers.
    """
    nodes = [
        helper.make_node(
            "Constant",
            [],
            ["policy/axis_last"],
            value=numpy_helper.from_array(np.array([-1], np.int64)),
        )
    ]
    if target == "domain":
        nodes += [
            helper.make_node("Mul", ["scores", POLICY_INV_TEMPERATURE], ["policy/z"]),
            helper.make_node("Softmax", ["policy/z"], ["policy/q"], axis=-1),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["scores"], ["policy/q"]))
    nodes += [
        # q * 0 + costs broadcasts the costs to the batch from a prompt-dependent tensor, so
        # that onnxruntime cannot fold costs * inv_wtp with the file's values
        helper.make_node("Sub", ["policy/q", "policy/q"], ["policy/zeros"]),
        helper.make_node("Add", ["policy/zeros", POLICY_COSTS], ["policy/costs_b"]),
        helper.make_node("Mul", ["policy/costs_b", POLICY_INV_WTP], ["policy/penalty"]),
        helper.make_node("Sub", ["policy/q", "policy/penalty"], ["policy/utility"]),
        helper.make_node("ArgMax", ["policy/utility"], ["policy/pick"], axis=1, keepdims=0),
        helper.make_node("Unsqueeze", ["policy/pick", "policy/axis_last"], ["policy/pick2"]),
        helper.make_node(
            "GatherElements", ["policy/q", "policy/pick2"], ["policy/q_pick2"], axis=1
        ),
        helper.make_node("Squeeze", ["policy/q_pick2", "policy/axis_last"], ["policy/q_pick"]),
    ]
    if target == "domain":
        nodes.append(helper.make_node("Identity", ["policy/q_pick"], [CONFIDENCE]))
    else:
        nodes += [
            helper.make_node(
                "Constant",
                [],
                ["policy/zero"],
                value=numpy_helper.from_array(np.array(0.0, np.float32)),
            ),
            helper.make_node(
                "Constant",
                [],
                ["policy/one"],
                value=numpy_helper.from_array(np.array(1.0, np.float32)),
            ),
            helper.make_node("Clip", ["policy/q_pick", "policy/zero", "policy/one"], [CONFIDENCE]),
        ]
    nodes += [
        helper.make_node("Less", [CONFIDENCE, POLICY_MIN_CONFIDENCE], ["policy/unsure"]),
        helper.make_node("Where", ["policy/unsure", POLICY_FALLBACK, "policy/pick"], [CHOICE]),
    ]
    return nodes


def policy_initializers(policy: Policy, experts: list[str], target: str) -> list[onnx.TensorProto]:
    """The policy initializers of ``policy`` as TensorProtos."""
    return [
        numpy_helper.from_array(np.ascontiguousarray(v), name)
        for name, v in policy.initializers(experts, target).items()
    ]


def add_policy(model: onnx.ModelProto, target: str, policy: Policy, experts: list[str]) -> None:
    """Append the decision nodes, their initializers and outputs to ``model`` in place.

    A graph that already has them only gets its initializers rewritten.
    """
    if has_policy(model):
        set_policy_initializers(model, policy, experts, target)
        return
    g = model.graph
    g.node.extend(policy_nodes(target))
    g.initializer.extend(policy_initializers(policy, experts, target))
    g.output.extend(
        [
            helper.make_tensor_value_info(CHOICE, TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info(CONFIDENCE, TensorProto.FLOAT, ["batch"]),
        ]
    )


def set_policy_initializers(
    model: onnx.ModelProto, policy: Policy, experts: list[str], target: str
) -> None:
    """Rewrite the policy initializers of a graph that has the decision nodes."""
    values = {t.name: t for t in policy_initializers(policy, experts, target)}
    for tensor in model.graph.initializer:
        if tensor.name in values:
            tensor.CopyFrom(values[tensor.name])
