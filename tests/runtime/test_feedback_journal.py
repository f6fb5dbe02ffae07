"""The feedback journal: durable before the answer, replayed at load, folded at save (issue 19)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from irde_onnx.errors import RouterFormatError
from irde_onnx.runtime import Router, RouterEditor
from irde_onnx.runtime.live import LiveRouter
from irde_onnx.store.config import read_config
from irde_onnx.store.folder import verify_generation
from irde_onnx.store.journal import JOURNAL_FILE, read_journal

ROWS = [
    {"text": "solve the integral of a matrix", "expert": "math"},
    {"text": "the judge of the appeal court", "expert": "law"},
    {"text": "compile my python loop", "expert": "code"},
]


def _folded(root, rows=ROWS):
    """The head of a router with ``rows`` folded in memory (the reference)."""
    editor = RouterEditor.open(root)
    editor.add_feedback(rows)
    return editor.head


def test_journaled_feedback_is_replayed_at_load(toy_router, tmp_path):
    import shutil

    reference = _folded(shutil.copytree(toy_router, tmp_path / "ref"))
    live = LiveRouter(toy_router)
    seq, router = live.feedback(ROWS)
    assert seq == 3 and (toy_router / JOURNAL_FILE).exists()
    assert live.router is router and router.stats.journal_seq == 3
    np.testing.assert_allclose(router.head[0], reference[0], atol=1e-12)
    entries, _ = read_journal(toy_router)
    assert [e[0] for e in entries] == [1, 2, 3] and entries[0][2] == ROWS[0]
    fresh = Router.load(toy_router)  # no save happened: the load replays the journal
    np.testing.assert_allclose(fresh.head[0], reference[0], atol=1e-12)
    assert fresh.stats.feedback_rows.tolist() == [1, 1, 1]


def test_save_folds_the_journal_and_truncates_it(toy_router):
    live = LiveRouter(toy_router)
    live.feedback_save_rows = 4
    live.feedback(ROWS)
    head = live.router.head[0].copy()
    live.feedback([{"text": "a clause of the law", "expert": "law"}])  # 4th row: a save
    assert not (toy_router / JOURNAL_FILE).exists()
    loaded = Router.load(toy_router)
    assert loaded.stats.journal_seq == 4 and loaded.stats.feedback_rows.tolist() == [1, 2, 1]
    assert not np.allclose(loaded.head[0], head)
    np.testing.assert_allclose(loaded.head[0], live.router.head[0], atol=1e-6)
    live.feedback([{"text": "solve x", "expert": "math"}])
    assert [e[0] for e in read_journal(toy_router)[0]] == [5]  # numbering goes on


def test_entries_a_save_already_folded_are_skipped(toy_router):
    """A crash between the commit and the truncation leaves folded entries: not counted twice."""
    live = LiveRouter(toy_router)
    live.feedback(ROWS)
    stale = (toy_router / JOURNAL_FILE).read_bytes()
    editor = RouterEditor.open(toy_router)
    editor.save()  # folds 1..3
    (toy_router / JOURNAL_FILE).write_bytes(stale)
    again = Router.load(toy_router)
    assert again.stats.feedback_rows.tolist() == [1, 1, 1]
    np.testing.assert_allclose(again.head[0], live.router.head[0], atol=1e-6)


def test_torn_last_line_is_ignored_and_a_bad_line_is_named(toy_router):
    live = LiveRouter(toy_router)
    live.feedback(ROWS[:1])
    path = toy_router / JOURNAL_FILE
    with open(path, "ab") as fh:
        fh.write(b'{"seq": 2, "weight": 10.0, "row": {"te')  # a write cut by a crash
    assert Router.load(toy_router).stats.feedback_rows.tolist() == [0, 0, 1]
    path.write_bytes(path.read_bytes() + b'\n{"seq": 3}\n')
    with pytest.raises(RouterFormatError, match=r"feedback.jsonl line 2 is not a feedback"):
        Router.load(toy_router)


def test_a_bad_row_journals_nothing(toy_router):
    live = LiveRouter(toy_router)
    with pytest.raises(Exception, match="row 2: unknown expert 'chemistry'"):
        live.feedback([ROWS[0], {"text": "x", "expert": "chemistry"}])
    assert not (toy_router / JOURNAL_FILE).exists() and live.swaps == 0


def test_a_replica_sees_feedback_through_hot_reload(toy_router):
    writer, replica = LiveRouter(toy_router), LiveRouter(toy_router)
    assert not replica.reload_if_changed()
    writer.feedback(ROWS)
    assert not writer.reload_if_changed()  # its own rows are already served
    assert replica.reload_if_changed()
    np.testing.assert_allclose(replica.router.head[0], writer.router.head[0], atol=1e-12)
    # and feedback taken by the replica continues the numbering
    seq, _ = replica.feedback([{"text": "solve x", "expert": "math"}])
    assert seq == 4 and writer.reload_if_changed()
    assert writer.router.stats.feedback_rows.tolist() == [1, 1, 2]


def test_journal_is_not_part_of_the_generation(toy_router):
    """Hash checks and the verifier see only router.json's files; the journal is beside them."""
    LiveRouter(toy_router).feedback(ROWS)
    verify_generation(toy_router, read_config(toy_router))
    config = json.loads((toy_router / "router.json").read_text())
    assert JOURNAL_FILE not in json.dumps(config)


def test_editor_change_while_feedback_arrives(toy_router):
    """An editor with unsaved changes saves over journal growth and keeps the newer rows."""
    editor = RouterEditor.open(toy_router)
    editor.set_costs({"code": 1.0, "law": 2.0, "math": 3.0})
    LiveRouter(toy_router).feedback(ROWS)
    editor.save()  # the journal grew after the editor read the folder: its rows stay
    loaded = Router.load(toy_router)
    assert loaded.stats.feedback_rows.tolist() == [1, 1, 1]
    assert loaded.policy.costs is not None


def test_journal_replays_forgetting_alike(toy_router, tmp_path):
    import shutil

    reference = RouterEditor.open(shutil.copytree(toy_router, tmp_path / "ref"))
    reference.add_feedback(ROWS, half_life=2)
    live = LiveRouter(toy_router)
    live.feedback(ROWS[:1], half_life=2)
    live.feedback(ROWS[1:])  # the recorded half-life
    assert read_journal(toy_router)[0][0][3] == 2.0
    loaded = Router.load(toy_router)
    np.testing.assert_allclose(loaded.head[0], reference.head[0], atol=1e-12)
    live.feedback_save_rows = 1
    live.feedback([{"text": "solve x", "expert": "math"}])  # a save: folded into stats.npz
    reference.add_feedback([{"text": "solve x", "expert": "math"}])
    np.testing.assert_allclose(Router.load(toy_router).head[0], reference.head[0], atol=1e-6)
