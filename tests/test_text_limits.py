"""The text rule: prompts that fit tokenize exactly as before the cut; any prompt routes."""

import json
import subprocess
import sys
from itertools import islice

import numpy as np
import pytest

from irde_onnx.runtime import Router
from irde_onnx.runtime.tokenize import MAX_CHARS_PER_TOKEN, TextTokenizer
from tests.conftest import DEMO, read_rows, shared_data_or_fail


@pytest.fixture(scope="module")
def router(static_router_dir):
    return Router.load(static_router_dir)


def _sample(path, n):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in islice(fh, n)]


def test_the_cut_changes_no_ids_of_prompts_that_fit(router):
    """Every demo prompt and a sample of every shared data set: same ids as uncut."""
    texts = [r["text"] for r in read_rows(DEMO / "train.jsonl")]
    texts += [r["text"] for r in read_rows(DEMO / "samples.jsonl")]
    for name in ("routerbench/test.jsonl", "routerdc7/test_id.jsonl", "routerdc7/test_ood.jsonl"):
        texts += _sample(shared_data_or_fail(*name.split("/")), 400)
    for domain in sorted(shared_data_or_fail("domains").glob("*.jsonl")):
        texts += _sample(domain, 40)
    tok = router.tokenizer
    uncut = [e.ids for e in tok.tokenizer.encode_batch(texts)]  # truncation only, no cut
    cut = tok.encode(texts)
    assert len(texts) > 1500
    assert all(list(a) == b for a, b in zip(cut, uncut, strict=True))
    assert max(len(t) for t in texts) > 2000  # long prompts are in the sample


def test_a_huge_prompt_routes_as_its_prefix(router):
    limit = router.config.max_length * MAX_CHARS_PER_TOKEN
    huge = "Solve the equation 3x + 5 = 20 for x. " * 30_000  # about 1 MB
    prefix = huge[:limit]
    a, b = router.route([huge, prefix])
    assert a == b
    ids = router.tokenizer.encode([huge])[0]
    assert len(ids) == router.config.max_length


def test_a_lone_surrogate_becomes_the_replacement_character(router):
    routes = router.route(["a \ud800 b", "Solve 3x + 5 = 20", "\udfff"])
    assert routes[0] == router.route(["a \ufffd b"])[0]
    assert routes[1] == router.route(["Solve 3x + 5 = 20"])[0]  # the batch is unaffected
    assert routes[2] == router.route(["\ufffd"])[0]
    # a pair stays the character it encodes
    assert router.route(["\ud83d\ude00"])[0] == router.route(["\U0001f600"])[0]


def test_tokenizer_needs_max_length_of_two(static_router_dir):
    from irde_onnx.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="max_length"):
        TextTokenizer(static_router_dir / "tokenizer.json", 1)


def test_route_reads_standard_input_through_a_pipe(static_router_dir):
    rows = [{"id": 1, "text": "Solve 3x + 5 = 20"}, {"id": "b", "text": "def f(x): return x"}]
    stdin = "".join(json.dumps(r) + "\n" for r in rows)
    out = subprocess.run(
        [sys.executable, "-m", "irde_onnx", "route", str(static_router_dir), "--input", "-"],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["id"] for line in lines] == [1, "b"]
    assert [line["expert"] for line in lines] == ["math", "code"]
    bad = subprocess.run(
        [sys.executable, "-m", "irde_onnx", "route", str(static_router_dir), "--input", "-"],
        input=b'{"text": "\xff"}\n',
        capture_output=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stderr.decode().count("\n") == 1 and b"<stdin>:1" in bad.stderr


def test_scores_are_finite_for_extreme_prompts(router):
    texts = ["", " ", "\x00" * 50, "\U0010ffff" * 9000, "a" * 1_000_000]
    scores = router.scores(texts, batch_size=2)
    assert scores.shape == (5, 5) and np.isfinite(scores).all()
