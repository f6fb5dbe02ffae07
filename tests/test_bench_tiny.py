"""benchmarks/page_download.py and benchmarks/tiny_quality.py: their tables from fixed figures
(the measurements themselves need Chromium and ../shared/data: run the scripts)."""

from benchmarks import page_download, tiny_quality


def test_page_groups_and_verdicts():
    assert page_download.group("/vendor/ort-wasm-simd-threaded.wasm") == "wasm"
    assert page_download.group("/vendor/irde/core.js") == "scripts"
    assert page_download.group("/router/tiny/router.onnx.data") == "graph"
    assert page_download.group("/router/tiny/stats.npz") == "stats"
    assert page_download.group("/router/tiny/tokenizer.json") == "tokenizer"
    files = [
        {
            "path": "/vendor/ort-wasm-simd-threaded.wasm",
            "bytes": 5_000_000,
            "gzip": 1_000_000,
            "brotli": 800_000,
        },
        {"path": "/router/t/stats.npz", "bytes": 2_000_000, "gzip": 2_000_000, "brotli": 2_000_000},
    ]
    text = page_download.render({"header": "H", "pages": {"t": {"ready": "yes", "files": files}}})
    assert "| t | 5.00 / 1.00 |" in text
    assert "| 7.00 (**missed**) / 3.00 (met) / 2.80 (met) |" in text


def test_tiny_quality_table():
    v = {"accuracy": 0.9, "lam": 0.1, "temperature": 0.2, "graph_bytes": 4_900_000, "train_s": 1}
    s = {**v, "accuracy": 0.5, "temperature": None}
    prot = {
        p: {
            "n_train": 10,
            "n_test": 5,
            "variants": {"tiny int8 (grouped CV)": v, "static fp16 vote (grouped CV)": s},
        }
        for p in ("in_source", "cross_source")
    }
    text = tiny_quality.render({"header": "H", "protocols": prot})
    assert "| tiny int8 (grouped CV) | 90.0 (target 88%: met) | 90.0 (target 69%: met) |" in text
    assert "| static fp16 vote (grouped CV) | 50.0 | 50.0 | 4.90 | 0.1 | - |" in text
