"""LiveRouter: the one hot swap, for the server and long-lived processes."""

import pytest

from irde_onnx.errors import InvalidInputError
from irde_onnx.runtime import LiveRouter, Router, RouterEditor


def test_a_saved_change_is_swapped_in_whole_by_reload_if_changed(toy_router):
    live = LiveRouter(toy_router)
    served = live.router
    assert not live.reload_if_changed()
    editor = RouterEditor.open(toy_router)
    editor.remove_expert("law")
    editor.save()
    assert served.experts == ["code", "law", "math"]  # a Router never changes
    assert live.reload_if_changed() and live.swaps == 1
    assert live.router.experts == ["code", "math"] and live.router is not served
    assert live.generation == Router.load(toy_router).generation


def test_a_failed_change_leaves_the_served_router(toy_router):
    swaps = []
    live = LiveRouter(toy_router, on_swap=swaps.append)
    served = live.router
    with pytest.raises(InvalidInputError, match="unknown expert"):
        live.change(lambda editor: editor.remove_expert("nobody"))
    assert live.router is served and swaps == []
    router = live.change(lambda editor: editor.remove_expert("law"))
    assert live.router is router and swaps == ["api"] and router.experts == ["code", "math"]
    assert not live.reload_if_changed()  # its own save is the generation served


def test_a_broken_folder_keeps_serving_the_last_good_router(toy_router):
    live = LiveRouter(toy_router, retry_first=60.0)
    served = live.router
    (toy_router / "router.json").write_text("{")
    assert not live.reload_if_changed()
    assert live.stale and live.router is served and "router.json" in live.reload_error
