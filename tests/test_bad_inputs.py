"""Every bad input of the catalogue ends in one documented error and changes no file."""

import pytest

from irde_onnx.runtime import RouterEditor
from tests.bad_inputs import CASES, folder_hashes, linked_copy, prepare, run_api, run_cli

API_CASES = [c for c in CASES if c.error is not None]
CLI_CASES = [c for c in CASES if c.argv is not None or c.breaks is not None]


@pytest.fixture(scope="module")
def good(static_router_dir, tmp_path_factory):
    root = linked_copy(static_router_dir, tmp_path_factory.mktemp("bad-inputs") / "router")
    return root, RouterEditor.open(root)


def _ctx(case, good, tmp_path):
    root, router = good
    ctx = prepare(case, root, tmp_path)
    if case.breaks is None:
        ctx.use_router(router)  # one loaded router for every call that must fail
    return ctx


@pytest.mark.parametrize("case", API_CASES, ids=[c.name for c in API_CASES])
def test_api_raises_the_documented_error(case, good, tmp_path):
    ctx = _ctx(case, good, tmp_path)
    before = folder_hashes(ctx.root)
    run_api(case, ctx)
    assert folder_hashes(ctx.root) == before
    if case.breaks is None:
        assert good[1].experts == ["chinese", "code", "law", "math", "medicine"]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.name for c in CLI_CASES])
def test_cli_exits_2_with_one_line(case, good, tmp_path):
    ctx = _ctx(case, good, tmp_path)
    before = folder_hashes(ctx.root)
    code, err = run_cli(case, ctx)
    assert code == 2, err
    assert err.count("\n") == 1 and err.endswith("\n") and "Traceback" not in err, err
    assert case.says in err, err
    assert folder_hashes(ctx.root) == before


def test_catalogue_covers_the_issue():
    names = {c.name for c in CASES}
    for needed in (
        "batch_size '2'",
        "top_k '2'",
        "top_k True",
        "texts a dict",
        "scores as strings",
        "router.json experts: 5",
        "router.json max_length '256'",
        "router.json format_version true",
        "router.json lam 'abc'",
        "router.json not UTF-8",
        "experts fewer than the graph",
        "stats.npz garbage",
        "stats.npz 0-d array",
        "stats.npz wrong shape",
        "stats.npz holds NaN",
        "save to .",
        "expert name with NUL",
        "--input invalid UTF-8",
        "--input JSON nested 100k deep",
        "scores 1e200",
        "train scores 1e300",
        "merge NaN statistics",
        "graph head holds NaN",
    ):
        assert needed in names
