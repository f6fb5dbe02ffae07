"""``irde feedback`` on the toy router: the fold, the save, the errors (issue 19)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from irde_onnx.cli import main
from irde_onnx.runtime import Router, RouterEditor
from irde_onnx.runtime.live import LiveRouter
from irde_onnx.store.journal import JOURNAL_FILE

ROWS = [
    {"text": "solve the integral of a matrix", "expert": "math"},
    {"text": "the judge of the appeal court", "expert": "law"},
]


def _hashes(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_feedback_command_folds_and_saves(toy_router, tmp_path, capsys):
    data = tmp_path / "fb.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    reference = RouterEditor.open(toy_router)
    reference.add_feedback(ROWS, traffic_weight=3)
    assert main(["feedback", str(toy_router), "--data", str(data), "--traffic-weight", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rows"] == 2 and out["traffic_weight"] == 3
    assert out["feedback_rows"] == {"code": 0, "law": 1, "math": 1}
    np.testing.assert_allclose(Router.load(toy_router).head[0], reference.head[0], atol=1e-6)


def test_feedback_command_folds_the_servers_journal(toy_router, tmp_path, capsys):
    LiveRouter(toy_router).feedback(ROWS[:1])
    data = tmp_path / "fb.jsonl"
    data.write_text(json.dumps(ROWS[1]) + "\n")
    assert main(["feedback", str(toy_router), "--data", str(data)]) == 0
    assert not (toy_router / JOURNAL_FILE).exists()
    stats = Router.load(toy_router).stats
    assert stats.feedback_rows.tolist() == [0, 1, 1] and stats.journal_seq == 1


@pytest.mark.parametrize(
    ("lines", "argv", "message"),
    [
        (
            '{"text": "a", "expert": "law"}\n\n{"text": "b", "expert": "chem"}\n',
            [],
            "fb.jsonl:3: unknown expert 'chem'",
        ),
        (
            '{"text": "a", "scores": {"law": 1}}\n',
            [],
            "fb.jsonl:1: this router was trained on domains",
        ),
        ('{"text": "a", "expert": "law"}\n', ["--traffic-weight", "-1"], "finite number > 0"),
        ("not json\n", [], "fb.jsonl:1: not valid JSON"),
    ],
)
def test_feedback_command_errors_change_nothing(toy_router, tmp_path, capsys, lines, argv, message):
    data = tmp_path / "fb.jsonl"
    data.write_text(lines)
    before = _hashes(toy_router)
    code = main(["feedback", str(toy_router), "--data", str(data), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert _hashes(toy_router) == before


def test_info_shows_traffic_against_training(toy_router, capsys):
    assert main(["info", str(toy_router)]) == 0
    info = json.loads(capsys.readouterr().out)["feedback"]
    assert info["traffic_weight"] is None and info["journal_rows"] == 0
    assert {e["traffic_share"] for e in info["experts"].values()} == {0.0}
    editor = RouterEditor.open(toy_router)
    editor.add_feedback(ROWS, traffic_weight=10)
    editor.save()
    LiveRouter(toy_router).feedback([{"text": "compile my code", "expert": "code"}])
    assert main(["info", str(toy_router)]) == 0
    out = json.loads(capsys.readouterr().out)
    info = out["feedback"]
    assert info["traffic_weight"] == 10 and info["journal_rows"] == 1
    assert JOURNAL_FILE in out["file_bytes"]
    ids = Router.load(toy_router).tokenizer.content_ids([r["text"] for r in ROWS])
    traffic = 10.0 * sum(len(i) for i in ids)  # pooled rows: every domain column rests on them
    stats = RouterEditor.open(toy_router).stats  # (the journal row replayed: not in info yet)
    for k, name in enumerate(["code", "law", "math"]):
        e = info["experts"][name]
        assert e["traffic_weight"] == pytest.approx(traffic)
        assert e["training_weight"] + e["traffic_weight"] == pytest.approx(
            stats.column_n(k) - 10.0 * 3  # "compile my code": 3 tokens, in the journal only
        )
    assert info["experts"]["law"]["feedback_rows"] == 1
