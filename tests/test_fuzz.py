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
    for kwargs in ({"top_k": value}, {"batch_size": value}):
        try:
            router.route(["hello"], **kwargs)
        except InvalidInputError:
            pass
    try:
        router.route(value)
    except InvalidInputError:
        pass
