"""Cost of an uncertainty output in the graph: full LinUCB width vs a k-dim subspace width.

Builds the bonus as a stand-alone ONNX graph on the pooled features (what would be appended
after the router's ``features`` output) and times it with onnxruntime at batch 1, 1 thread:

  subspace k:  z = [(f - mu) P, 1]            P (d, k), mu (d,)
               width_e = sqrt(z A_e^-1 z^T)   A_e^-1 ((k+1) x (k+1)) per expert, stacked
  full:        the same with P = I (k = d), i.e. (d+1)^2 floats per expert

Bytes are float32 initializers. Compare the times with route() at batch 1 (BENCHMARKS.md,
speed: minilm-int8, 1 thread, 64 tokens p50 4.74 ms; 16 tokens 1.71 ms).

    python research/feedback/bonus_cost.py --help
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from research.feedback.common import HERE, write_results

ROUTE_MS = {"16 tok": 1.71, "64 tok": 4.74}


def graph(d: int, k: int | None, E: int, rng):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    kk = d if k is None else k
    inits = []
    nodes = []
    if k is None:
        nodes.append(helper.make_node("Identity", ["f"], ["zc"]))
    else:
        inits += [
            numpy_helper.from_array(rng.normal(size=d).astype(np.float32), "mu"),
            numpy_helper.from_array(rng.normal(size=(d, k)).astype(np.float32), "P"),
        ]
        nodes += [
            helper.make_node("Sub", ["f", "mu"], ["fc"]),
            helper.make_node("MatMul", ["fc", "P"], ["zc"]),
        ]
    a = rng.normal(size=(kk + 1, kk + 1))
    a = (a @ a.T / kk).astype(np.float32)
    stack = np.concatenate([a] * E, axis=1)  # (k+1, E*(k+1))
    inits += [
        numpy_helper.from_array(stack, "Ainv"),
        numpy_helper.from_array(np.ones((1, 1), np.float32), "one"),
        numpy_helper.from_array(np.array([-1, E, kk + 1], np.int64), "shape3"),
        numpy_helper.from_array(np.array([2], np.int64), "ax"),
    ]
    nodes += [
        helper.make_node("Shape", ["f"], ["fs"], start=0, end=1),
        helper.make_node("Concat", ["fs", "one_i"], ["ones_shape"], axis=0),
        helper.make_node("Expand", ["one", "ones_shape"], ["ones"]),
        helper.make_node("Concat", ["zc", "ones"], ["z"], axis=1),
        helper.make_node("MatMul", ["z", "Ainv"], ["za"]),
        helper.make_node("Reshape", ["za", "shape3"], ["za3"]),
        helper.make_node("Unsqueeze", ["z", "one_ax"], ["z3"]),
        helper.make_node("Mul", ["za3", "z3"], ["q"]),
        helper.make_node("ReduceSum", ["q", "ax"], ["s"], keepdims=0),
        helper.make_node("Abs", ["s"], ["sa"]),
        helper.make_node("Sqrt", ["sa"], ["width"]),
    ]
    inits += [
        numpy_helper.from_array(np.array([1], np.int64), "one_i"),
        numpy_helper.from_array(np.array([1], np.int64), "one_ax"),
    ]
    g = helper.make_graph(
        nodes,
        "bonus",
        [helper.make_tensor_value_info("f", TensorProto.FLOAT, ["b", d])],
        [helper.make_tensor_value_info("width", TensorProto.FLOAT, ["b", E])],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    nbytes = sum(np.prod(t.dims) * 4 for t in inits if t.data_type == TensorProto.FLOAT)
    return m.SerializeToString(), int(nbytes)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    args = ap.parse_args()
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    out = {}
    for E in (7, 11):
        for k in (32, 64, None):
            model, nbytes = graph(args.d, k, E, rng)
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.inter_op_num_threads = 1
            s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
            f = rng.normal(size=(1, args.d)).astype(np.float32)
            for _ in range(100):
                s.run(None, {"f": f})
            ts = []
            for _ in range(args.reps):
                t = time.perf_counter()
                s.run(None, {"f": f})
                ts.append(time.perf_counter() - t)
            p50 = float(np.median(ts) * 1e3)
            kk = args.d if k is None else k
            flops = (2 * args.d * k if k else 0) + E * (2 * (kk + 1) ** 2 + 2 * (kk + 1))
            name = f"E={E} {'full' if k is None else f'k={k}'}"
            out[name] = {
                "bytes_float32": nbytes,
                "flops": flops,
                "p50_ms_batch1_1thread": p50,
                "share_of_route_64tok": p50 / ROUTE_MS["64 tok"],
                "share_of_route_16tok": p50 / ROUTE_MS["16 tok"],
            }
            print(
                f"{name}: {nbytes / 1e6:.3f} MB, {flops / 1e6:.3f} Mflop, p50 {p50:.4f} ms "
                f"({100 * p50 / ROUTE_MS['64 tok']:.1f}% of route at 64 tok, {100 * p50 / ROUTE_MS['16 tok']:.1f}% at 16)"
            )
    write_results(args.out, "bonus_cost", out)


if __name__ == "__main__":
    main()
