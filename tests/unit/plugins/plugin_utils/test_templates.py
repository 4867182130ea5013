"""The template mechanics both message templates share: split at markers, join, and the bounded shape cache."""

from __future__ import annotations

from ansible_collections.pinned.winrm.plugins.plugin_utils._templates import UNKNOWN, ShapeCache, Template, marker


def test_a_template_joins_back_the_values_it_was_split_at_in_their_written_order() -> None:
    written = f"<a x='{marker(1)}'>{marker(0)}</a><b>{marker(1)}</b>".encode("ascii")
    template = Template.split(written, 2, once=False)
    assert template is not None
    assert template.join([b"zero", b"one"]) == b"<a x='one'>zero</a><b>one</b>"


def test_a_value_written_twice_or_not_at_all_is_refused_where_each_must_be_written_once() -> None:
    twice = f"{marker(0)}-{marker(1)}-{marker(1)}".encode("ascii")
    assert Template.split(twice, 2, once=True) is None
    assert Template.split(twice, 2, once=False) is not None
    missing = f"{marker(0)}".encode("ascii")
    assert Template.split(missing, 2, once=False) is None
    assert Template.split(missing, 2, once=True) is None


def test_the_shape_cache_tells_unknown_from_unusable_and_stays_within_its_bound() -> None:
    cache = ShapeCache(3)
    assert cache.get("a") is UNKNOWN
    cache.put("a", None)  # met, and no template can serve it
    assert cache.get("a") is None
    for shape in "bcd":
        cache.put(shape, Template((b"x",), ()))
    assert len(cache) <= 3 and cache.get("d") is not None
