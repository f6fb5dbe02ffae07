"""Property test: route() on arbitrary text never fails and always gives a well-formed answer."""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from irde_onnx.errors import InvalidInputError
from irde_onnx.runtime import Router

# every code point, unpaired surrogates and control characters included
ANY_CHAR = st.characters(exclude_categories=())
TEXT = st.one_of(
    st.text(ANY_CHAR, max_size=200),
    st.text(st.characters(codec="utf-8"), max_size=50),
    # huge strings: a short piece repeated up to 300k characters
    st.builds(
        lambda piece, n: piece * n,
        st.text(ANY_CHAR, min_size=1, max_size=8),
        st.integers(1_000, 40_000),
    ),
    st.sampled_from(
        [
            "",
            "\x00",
            "\ud800",
            "\udfff\ud800x",
            "数学 math رياضيات गणित ∫x dx",
            "\u202e\u200b\ufeff",
            "e\u0301" * 500,
        ]
    ),
)


@pytest.fixture(scope="module")
def router(static_router_dir):
    return Router.load(static_router_dir)


@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    texts=st.lists(TEXT, min_size=1, max_size=4),
    top_k=st.integers(1, 5),
    batch_size=st.one_of(st.none(), st.integers(1, 3)),
)
def test_route_arbitrary_text(router, texts, top_k, batch_size):
    routes = router.route(texts, top_k=top_k, batch_size=batch_size)
    assert len(routes) == len(texts)
    for r in routes:
        assert list(r.scores) == router.experts
        assert all(math.isfinite(v) for v in r.scores.values())
        assert len(r.top) == top_k and r.top[0] == r.expert
        assert r.scores[r.expert] == max(r.scores.values())


def _valid_top_k(value, n_experts):
    return type(value) is int and 1 <= value <= n_experts


def _valid_batch_size(value):
    return value is None or (type(value) is int and value >= 1)


def _valid_texts(value):
    return isinstance(value, list) and all(isinstance(t, str) for t in value)


def _check_argument(call, valid):
    """A valid argument routes; any other raises InvalidInputError (no other error)."""
    if valid:
        call()
    else:
        with pytest.raises(InvalidInputError):
            call()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    value=st.one_of(
        st.integers(),
        st.floats(),
        st.text(max_size=5),
        st.booleans(),
        st.none(),
        st.lists(st.integers(), max_size=2),
    )
)
def test_route_arguments_fail_only_with_the_documented_error(router, value):
    n = len(router.experts)
    _check_argument(lambda: router.route(["hello"], top_k=value), _valid_top_k(value, n))
    _check_argument(lambda: router.route(["hello"], batch_size=value), _valid_batch_size(value))
    _check_argument(lambda: router.route(value), _valid_texts(value))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"top_k": -3},
        {"top_k": 0},
        {"top_k": 6},
        {"top_k": True},
        {"top_k": 2.0},
        {"batch_size": 0},
        {"batch_size": -1},
        {"batch_size": 1.5},
    ],
)
def test_out_of_range_arguments_raise(router, kwargs):
    assert len(router.experts) == 5
    with pytest.raises(InvalidInputError):
        router.route(["hello"], **kwargs)


@pytest.mark.parametrize("texts", [None, "one string", b"bytes", 3, ["ok", None], {"a": 1}])
def test_texts_that_are_not_a_list_of_strings_raise(router, texts):
    with pytest.raises(InvalidInputError):
        router.route(texts)
