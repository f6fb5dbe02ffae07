"""The runtime commands of ``irde`` on the toy router: route, info, experts, stats, eval."""

import hashlib
import json

import pytest

from irde_onnx.cli import main
from irde_onnx.runtime import Router


def _hashes(folder):
    """sha256 of every file of a router folder but the (empty) lock file."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.iterdir()
        if p.name != ".irde.lock"
    }


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_route_and_info(toy_router_dir, tmp_path, capsys):
    code, out, _ = _run(capsys, "route", str(toy_router_dir), "solve the equation", "--top-k", "2")
    assert code == 0
    route = json.loads(out)
    assert route["expert"] == "math" and len(route["top"]) == 2
    src = tmp_path / "p.jsonl"
    src.write_text('{"id": 7, "text": "a contract clause"}\n{"text": "python loop"}\n')
    code, out, _ = _run(capsys, "route", str(toy_router_dir), "--input", str(src))
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and rows[0]["id"] == 7 and "id" not in rows[1]
    code, out, _ = _run(capsys, "info", str(toy_router_dir))
    info = json.loads(out)
    assert code == 0 and info["experts"] == ["code", "law", "math"]
    assert info["encoder"] == "static" and info["total_bytes"] > 0


def test_experts_and_stats_commands(toy_router, tmp_path, capsys):
    rows = tmp_path / "med.jsonl"
    rows.write_text('{"text": "the patient heart"}\n{"text": "a dose"}\n')
    assert (
        main(["experts", "add", str(toy_router), "medicine", "--data", str(rows), "--quiet"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["experts"][-1] == "medicine"
    scored = tmp_path / "scored.jsonl"
    scored.write_text('{"text": "solve x", "score": 1}\n{"text": "a court", "score": 0}\n')
    assert main(["experts", "add", str(toy_router), "llm", "--data", str(scored), "--quiet"]) == 0
    assert main(["experts", "remove", str(toy_router), "law"]) == 0
    capsys.readouterr()
    assert main(["experts", "list", str(toy_router)]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in listed] == ["code", "math", "medicine", "llm"]
    assert [r["mode"] for r in listed][-2:] == ["pooled", "own"]
    assert Router.load(toy_router).experts == ["code", "math", "medicine", "llm"]


def test_eval_labels_on_the_toy_router(toy_router_dir, tmp_path, capsys):
    # the last label is deliberately wrong for its text, so accuracy is neither 0 nor 1
    texts, labels = ["solve x", "a court appeal", "a court appeal"], ["math", "law", "math"]
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(
            json.dumps({"text": t, "expert": e}) + "\n" for t, e in zip(texts, labels, strict=True)
        )
    )
    code, out, _ = _run(capsys, "eval", str(toy_router_dir), "--data", str(rows), "--quiet")
    metrics = json.loads(out)
    assert code == 0 and metrics["kind"] == "label"
    # what router.route decides on the same rows
    routes = Router.load(toy_router_dir).route(texts)
    right = [r.expert == e for r, e in zip(routes, labels, strict=True)]
    assert right == [True, True, False]
    assert metrics["accuracy"] == pytest.approx(sum(right) / len(right))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["experts", "remove", "{r}", "nobody"], "unknown expert"),
        (["experts", "add", "{r}", "law", "--data", "{rows}"], "already exists"),
        (["experts", "add", "{r}", "x", "--data", "{mixed}"], 'every row has a "score"'),
        (["experts", "add", "{r}", "x", "--data", "{missing}"], "not found"),
        (["experts", "list", "{missing}"], "not found"),
        (["stats", "merge", "{r}", "{missing}"], "not found"),
        (["route", "{r}"], "no prompts"),
        (["route", "{r}", "x", "--top-k", "9"], "exceeds"),
        (["route", "{missing}", "x"], "not found"),
    ],
)
def test_user_errors_exit_2_with_one_line(toy_router, tmp_path, capsys, argv, message):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "a"}\n')
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"text": "a", "score": 1}\n{"text": "b"}\n')
    names = {
        "r": str(toy_router),
        "rows": str(rows),
        "mixed": str(mixed),
        "missing": str(tmp_path / "missing"),
    }
    before = _hashes(toy_router)
    code = main([a.format(**names) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert _hashes(toy_router) == before
