"""No silent NaN router: overflowing statistics or heads are refused before any swap."""

import shutil

import numpy as np
import pytest

from irde_onnx.errors import InvalidInputError
from irde_onnx.runtime import RouterEditor
from tests.bad_inputs import folder_hashes


@pytest.fixture
def router(static_router_dir, tmp_path):
    return RouterEditor.open(shutil.copytree(static_router_dir, tmp_path / "router"))


def test_statistics_that_overflow_the_head_are_refused_before_the_swap(router):
    before_scores = router.scores(["Solve 3x + 5 = 20"])
    before_files = folder_hashes(router.path)  # refused changes write nothing
    huge = router.stats.copy()
    huge.sum_xy = huge.sum_xy * 1e120  # finite in float64, a head beyond float32
    with pytest.raises(InvalidInputError, match="head holds NaN or infinite"):
        router.merge_stats(huge)
    nan = router.stats.copy()
    nan.sum_y = nan.sum_y.copy()
    nan.sum_y[0] = np.nan
    with pytest.raises(InvalidInputError, match="statistics given"):
        router.merge_stats(nan)
    np.testing.assert_array_equal(router.scores(["Solve 3x + 5 = 20"]), before_scores)
    assert router.experts == ["chinese", "code", "law", "math", "medicine"]
    assert folder_hashes(router.path) == before_files
