"""Input views: each view's output on fixed strings, the shared fixtures file, and routers
that store a view in router.json and apply it before tokenizing."""

import json
from pathlib import Path

import pytest

from irde_onnx.errors import InvalidInputError, RouterFormatError
from irde_onnx.runtime import Router, RouterEditor
from irde_onnx.runtime.tokenize import MAX_CHARS_PER_TOKEN, prepare_text
from irde_onnx.store.config import CONFIG_FILE, RouterConfig, read_config
from irde_onnx.views import AUTO_VIEWS, TAIL_CHARS_PER_TOKEN, apply_view, check_view, view_names

FIXTURES = Path(__file__).resolve().parents[2] / "conformance" / "views.json"
MC = "Which planet is largest?\nA. Mars\nB. Jupiter\nC. Venus\nD. Earth"


@pytest.mark.parametrize(
    ("view", "text", "expected"),
    [
        ("full", MC, MC),
        ("strip_options", MC, "Which planet is largest?"),
        ("strip_options", MC + "\nAnswer:", "Which planet is largest?"),
        ("strip_options", MC + "\n\nAnswer: \n", "Which planet is largest?"),
        ("strip_options", "题目\nA. 甲\nB. 乙\n答案：", "题目"),
        ("strip_options", "题目\nA. 甲\nB. 乙答案：", "题目"),
        ("strip_options", "Pick one:\n(A) red\n(B) blue", "Pick one:"),
        ("strip_options", "Choose\r\nA) yes\r\nB) no\r\n", "Choose"),
        # one option line is not a list of options; options alone are kept
        ("strip_options", "Only one\nA. alone", "Only one\nA. alone"),
        ("strip_options", "A. only\nB. options", "A. only\nB. options"),
        # options not at the end, or letters beyond J, stay
        (
            "strip_options",
            "Q\nA. one\nB. two\nthen a question?",
            "Q\nA. one\nB. two\nthen a question?",
        ),
        ("strip_options", "K. no\nL. neither", "K. no\nL. neither"),
        ("strip_options", "", ""),
        ("tail", "short", "short"),
        ("head_tail", "short", "short"),
    ],
)
def test_view_outputs(view, text, expected):
    assert apply_view(view, text, 256) == expected


def test_tail_keeps_whole_last_lines_within_the_budget():
    budget = 4 * TAIL_CHARS_PER_TOKEN
    assert apply_view("tail", "first line\nsecond line\nthird", 4) == "third"
    text = "no newline at all in this long text"
    assert apply_view("tail", text, 4) == text[-budget:]
    # code points, not UTF-16 units: an emoji counts once
    assert apply_view("tail", "ab\U0001f600cd\U0001f600ef", 2) == "\U0001f600cd\U0001f600ef"


def test_head_tail_keeps_a_quarter_head_and_the_tail():
    text = "HEAD-part-of-the-text\nmiddle that goes away\nthe question at the end?"
    out = apply_view("head_tail", text, 8)
    head = 8 * TAIL_CHARS_PER_TOKEN // 4
    assert out.startswith(text[:head] + "\n") and text.endswith(out.split("\n", 1)[1])
    assert len(out) <= 8 * TAIL_CHARS_PER_TOKEN + 1


def test_views_compose_left_to_right():
    text = "preamble " * 5 + "\nthe question?\nA. yes\nB. no"
    assert apply_view("strip_options+tail", text, 8) == "the question?"
    assert apply_view("tail+strip_options", text, 8) == apply_view(
        "strip_options", apply_view("tail", text, 8), 8
    )


def test_prepare_text_applies_the_view_between_surrogates_and_the_cut():
    # the view sees well-formed text (a lone surrogate is U+FFFD already)
    assert prepare_text("lone \ud800 x\nA. a\nB. b", 256, "strip_options") == "lone \ufffd x"
    long = "x" * (10 * 2 * MAX_CHARS_PER_TOKEN)
    assert prepare_text(long, 2, "full") == long[: 2 * MAX_CHARS_PER_TOKEN]
    assert prepare_text(long, 2, "tail") == long[-2 * TAIL_CHARS_PER_TOKEN :]


def test_fixture_file_matches_python():
    """The committed cases every host reproduces are Python's current output."""
    cases = json.loads(FIXTURES.read_text(encoding="ascii"))["cases"]
    assert {c["view"].split("+")[0] for c in cases} >= set(view_names())
    for case in cases:
        got = prepare_text(case["input"], case["max_length"], case["view"])
        assert got == case["output"], case


def test_unknown_views_are_refused_with_the_choices():
    assert check_view("strip_options+tail") == "strip_options+tail"
    assert set(AUTO_VIEWS) <= {check_view(v) for v in AUTO_VIEWS}
    with pytest.raises(InvalidInputError, match="choose one of"):
        check_view("strip")
    with pytest.raises(InvalidInputError):
        check_view("")


def _edit_config(root: Path, **fields) -> None:
    data = json.loads((root / CONFIG_FILE).read_text(encoding="utf-8"))
    data.update(fields)
    (root / CONFIG_FILE).write_text(json.dumps(data), encoding="utf-8")


def test_router_json_without_the_new_fields_loads_with_defaults(toy_router):
    data = json.loads((toy_router / CONFIG_FILE).read_text(encoding="utf-8"))
    for name in ("view", "layers", "selection"):
        data.pop(name, None)
    (toy_router / CONFIG_FILE).write_text(json.dumps(data), encoding="utf-8")
    cfg = read_config(toy_router)
    assert (cfg.view, cfg.layers, cfg.selection) == ("full", (), {})
    assert Router.load(toy_router).tokenizer.view == "full"


def test_a_router_applies_its_view(toy_router):
    plain = Router.load(toy_router)
    question = "integral derivative"
    with_options = question + "\nA. contract court\nB. contract court"
    assert plain.scores([with_options]).tolist() != plain.scores([question]).tolist()
    _edit_config(toy_router, view="strip_options")
    router = RouterEditor.open(toy_router)
    assert router.config.view == "strip_options"
    assert router.scores([with_options]).tolist() == router.scores([question]).tolist()
    # saving keeps the view
    router.save()
    assert read_config(toy_router).view == "strip_options"


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"view": "strip"}, "unknown view"),
        ({"view": 3}, "'view' must be a string"),
        ({"layers": [6, 5]}, "no layers to pool"),
        ({"layers": "6"}, "'layers' must be a list"),
        ({"selection": []}, "'selection' must be an object"),
    ],
)
def test_bad_new_fields_are_refused(toy_router, fields, match):
    _edit_config(toy_router, **fields)
    with pytest.raises(RouterFormatError, match=match):
        Router.load(toy_router)


def test_layers_must_match_feature_dim():
    base = dict(
        experts=("a", "b"),
        expert_modes=("pooled", "pooled"),
        encoder="minilm",
        precision="int8",
        strategy="mean",
        target="domain",
        lam=1.0,
        max_length=16,
        fingerprint="",
        package_version="0",
    )
    RouterConfig(**base, feature_dim=768, layers=(6, 5)).check()
    with pytest.raises(RouterFormatError, match="feature_dim"):
        RouterConfig(**base, feature_dim=384, layers=(6, 5)).check()
    with pytest.raises(RouterFormatError, match="layer numbers in 1..6"):
        RouterConfig(**base, feature_dim=768, layers=(7, 5)).check()
