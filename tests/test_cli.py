"""The irde command line: outputs and every user-error path (exit 2, one line)."""

import json
import shutil

import numpy as np
import pytest

from irde_onnx.cli import main
from irde_onnx.store.config import CONFIG_FILE

from .conftest import DEMO


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_user_error(code, err, text):
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert text in err, err


@pytest.fixture(scope="module")
def cli_router(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "router"
    assert (
        main(
            [
                "train",
                "--data",
                str(DEMO / "train.jsonl"),
                "--out",
                str(out),
                "--encoder",
                "static",
                "--quiet",
            ]
        )
        == 0
    )
    return out


def test_train_route_info(cli_router, capsys):
    code, out, _ = _run(
        capsys,
        "route",
        str(cli_router),
        "Solve 3x + 5 = 20",
        "Write a SQL query that counts users",
        "--top-k",
        "2",
    )
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 2
    assert lines[0]["expert"] == "math" and lines[1]["expert"] == "code"
    assert len(lines[0]["scores"]) == 5 and len(lines[0]["top"]) == 2
    code, out, _ = _run(capsys, "info", str(cli_router))
    info = json.loads(out)
    assert code == 0 and info["experts"] == ["chinese", "code", "law", "math", "medicine"]
    assert info["encoder"] == "static" and info["precision"] == "fp16"
    assert info["format_version"] == 3 and info["total_bytes"] > 20_000_000


def test_route_input_file_keeps_ids(cli_router, tmp_path, capsys):
    src = tmp_path / "p.jsonl"
    src.write_text(
        '{"id": "q1", "text": "What is the derivative of x^2?"}\n\n'
        '{"id": "q2", "text": "合同的效力如何认定？"}\n',
        encoding="utf-8",
    )
    code, out, _ = _run(capsys, "route", str(cli_router), "--input", str(src))
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["id"] for r in rows] == ["q1", "q2"]
    assert rows[0]["expert"] == "math"


def test_train_scores_rows(tmp_path, capsys):
    data = tmp_path / "scores.jsonl"
    rows = [
        {
            "text": f"prompt number {i} about {'math' if i % 2 else 'law'}",
            "scores": {"m1": float(i % 2), "m2": float(1 - i % 2)},
        }
        for i in range(20)
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    code, out, _ = _run(
        capsys,
        "train",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "r"),
        "--encoder",
        "static",
        "--strategy",
        "mean",
        "--lam",
        "0.5",
        "--quiet",
    )
    summary = json.loads(out)
    assert code == 0 and summary["target"] == "score" and summary["lam"] == 0.5
    assert summary["experts"] == ["m1", "m2"]


def test_train_stores_mean_row_costs_and_wtp(tmp_path, capsys):
    data = tmp_path / "costs.jsonl"
    rows = [
        {
            "text": f"prompt number {i} about {'math' if i % 2 else 'law'}",
            "scores": {"m1": float(i % 2), "m2": float(1 - i % 2)},
            "costs": {"m1": 0.001 * (1 + i % 3), "m2": 0.01},
        }
        for i in range(20)
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    code, out, _ = _run(
        capsys,
        "train",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "r"),
        "--encoder",
        "static",
        "--strategy",
        "mean",
        "--lam",
        "0.5",
        "--quiet",
        "--wtp",
        "0.05",
    )
    policy = json.loads(out)["policy"]
    assert code == 0 and policy["wtp"] == 0.05
    assert policy["costs"] == pytest.approx(
        {"m1": np.mean([r["costs"]["m1"] for r in rows]), "m2": 0.01}
    )
    code, _, err = _run(
        capsys,
        "train",
        "--data",
        str(DEMO / "train.jsonl"),
        "--out",
        str(tmp_path / "d"),
        "--encoder",
        "static",
        "--wtp",
        "0.05",
        "--quiet",
    )
    assert code == 2 and "--wtp needs costs" in err


def test_help_shows_examples(capsys):
    for argv in (["--help"], ["train", "--help"], ["route", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
        assert "examples:" in capsys.readouterr().out


def _bad(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("make_argv", "message"),
    [
        (lambda t: ["train", "--data", str(t / "nope.jsonl"), "--out", str(t / "o")], "not found"),
        (
            lambda t: ["train", "--data", _bad(t, "a.jsonl", "{bad json\n"), "--out", str(t / "o")],
            "a.jsonl:1: not valid JSON",
        ),
        (
            lambda t: [
                "train",
                "--data",
                _bad(t, "b.jsonl", '{"text": "x", "domain": "d"}\n'),
                "--out",
                str(t / "o"),
            ],
            "--label-field",
        ),
        (
            lambda t: [
                "train",
                "--data",
                _bad(t, "c.jsonl", '{"expert": "d"}\n'),
                "--out",
                str(t / "o"),
            ],
            '"text"',
        ),
        (
            lambda t: ["train", "--data", _bad(t, "d.jsonl", "[1, 2]\n"), "--out", str(t / "o")],
            "JSON object",
        ),
        (
            lambda t: [
                "train",
                "--data",
                _bad(
                    t,
                    "e.jsonl",
                    '{"text": "a", "expert": "x"}\n{"text": "b", "scores": {"x": 1}}\n',
                ),
                "--out",
                str(t / "o"),
            ],
            "mixes",
        ),
        (
            lambda t: [
                "train",
                "--data",
                _bad(
                    t,
                    "f.jsonl",
                    '{"text": "a", "scores": {"x": 1, "y": 0}}\n'
                    '{"text": "b", "scores": {"x": 1}}\n',
                ),
                "--out",
                str(t / "o"),
            ],
            "scores name",
        ),
        (
            lambda t: [
                "train",
                "--data",
                _bad(t, "g.jsonl", '{"text": "a", "scores": {"x": "high", "y": 0}}\n'),
                "--out",
                str(t / "o"),
            ],
            "not a finite number",
        ),
        (
            lambda t: ["train", "--data", _bad(t, "h.jsonl", "\n\n"), "--out", str(t / "o")],
            "no rows",
        ),
        (
            lambda t: [
                "train",
                "--data",
                _bad(t, "i.jsonl", '{"text": "a", "expert": "x"}\n'),
                "--out",
                str(t / "o"),
                "--encoder",
                "static",
            ],
            "at least 2 experts",
        ),
        (
            lambda t: [
                "train",
                "--data",
                str(DEMO / "train.jsonl"),
                "--out",
                str(t),
                "--encoder",
                "static",
            ],
            "not empty",
        ),
        (
            lambda t: [
                "train",
                "--data",
                str(DEMO / "train.jsonl"),
                "--out",
                str(t / "o"),
                "--encoder",
                "static",
                "--precision",
                "int8",
            ],
            "precision",
        ),
        (
            lambda t: [
                "train",
                "--data",
                str(DEMO / "train.jsonl"),
                "--out",
                str(t / "o"),
                "--encoder",
                "static",
                "--max-bytes",
                "2000000",
            ],
            "max_bytes (--max-bytes) applies to the tiny encoder only",
        ),
        (lambda t: ["route", str(t / "missing"), "hello"], "not found"),
        (lambda t: ["info", str(t)], "is missing"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, capsys, make_argv, message):
    (tmp_path / "keep").write_text("x")
    code, _, err = _run(capsys, *make_argv(tmp_path))
    _assert_user_error(code, err, message)


def test_route_errors(cli_router, tmp_path, capsys):
    code, _, err = _run(capsys, "route", str(cli_router))
    _assert_user_error(code, err, "no prompts")
    code, _, err = _run(capsys, "route", str(cli_router), "x", "--top-k", "9")
    _assert_user_error(code, err, "exceeds")
    broken = shutil.copytree(cli_router, tmp_path / "broken")
    cfg = json.loads((broken / CONFIG_FILE).read_text())
    cfg["format_version"] = 7
    (broken / CONFIG_FILE).write_text(json.dumps(cfg))
    code, _, err = _run(capsys, "route", str(broken), "x")
    _assert_user_error(code, err, "format_version 7")


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--out", "x"],
        ["train", "--data", "d", "--out", "x", "--lam", "-3"],
        ["train", "--data", "d", "--out", "x", "--lam", "lots"],
        ["train", "--data", "d", "--out", "x", "--encoder", "bert"],
        ["route", "r", "--top-k", "0"],
        ["nosuchcommand"],
        [],
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    _, err = capsys.readouterr()
    assert exc.value.code == 2
    assert err.count("\n") == 1 and "error:" in err, err


def test_demo_runs_offline_on_the_bundled_prompts(tmp_path, capsys):
    code, out, _ = _run(capsys, "demo", "--encoder", "static", "--out", str(tmp_path / "d"))
    assert code == 0
    assert "training a static router on 200 example prompts" in out
    right = int(out.split("routed to the expected expert")[0].split("\n")[-1].split("/")[0])
    assert right >= 12  # of 15 held-out prompts
    assert (tmp_path / "d" / "router.onnx").is_file()


def test_demo_defaults_to_the_embedded_minilm():
    from irde_onnx.cli import build_parser

    args = build_parser().parse_args(["demo"])
    assert args.encoder == "minilm" and args.out is None
