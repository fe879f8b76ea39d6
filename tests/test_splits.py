"""Splits by background, by object and by both, on hand-made sample lists."""

import pytest

from mdeas.data.layouts import Sample
from mdeas.data.splits import groups_dealt, limited, object_of, split


def seed_scheme(backgrounds: int, objects: int) -> list[Sample]:
    """Every background x every object, ids as the seed scheme writes them."""
    return [
        Sample(f"b{b:05d}_o{o:03d}_m0_s0_p0", f"bg/b{b:05d}.jpg", f"fg_bg/b{b}_{o}.jpg", f"mask/{b}_{o}.png", None)
        for b in range(backgrounds)
        for o in range(objects)
    ]


def test_object_is_read_from_the_seed_scheme_and_seed002_ids():
    assert object_of(seed_scheme(1, 8)[7]) == "007"
    seed002 = Sample("bg3/fg_12/overlay/5", "bg/bg3.jpg", "bg3/fg_12/overlay/5.jpg", "bg3/fg_12/mask/5.jpg", None)
    assert object_of(seed002) == "12"
    with pytest.raises(ValueError, match="sample 'b001_f02' names none"):
        object_of(Sample("b001_f02", "bg/b001.jpg", "fg_bg/b001_f02.jpg", "mask/b001_f02.png", None))


@pytest.mark.parametrize("by", ["background", "object", "both"])
def test_parts_share_nothing_they_are_split_by(by):
    parts = split(seed_scheme(10, 10), (0.5, 0.5), seed=0, by=by)
    (a, b) = parts
    shared_bg = {s.bg for s in a} & {s.bg for s in b}
    shared_obj = {object_of(s) for s in a} & {object_of(s) for s in b}
    assert (not shared_bg) == (by in ("background", "both"))
    assert (not shared_obj) == (by in ("object", "both"))
    total = sum(len(p) for p in parts)
    # 10 backgrounds x 10 objects: 5 + 5 of each; "both" keeps 5x5 + 5x5 = 50 of 100
    assert total == (50 if by == "both" else 100)
    assert split(seed_scheme(10, 10), (0.5, 0.5), seed=0, by=by) == parts  # deterministic


def test_background_split_keeps_index_order_and_groups():
    samples = seed_scheme(4, 3)
    train, test = split(samples, (0.5, 0.5), seed=1)
    assert [samples.index(s) for s in train] == sorted(samples.index(s) for s in train)
    assert len({s.bg for s in train}) == 2 and len(train) == 6


def test_an_unknown_split_by_is_refused():
    with pytest.raises(ValueError, match="data.split_by must be one of background, object, both"):
        split(seed_scheme(2, 2), (1.0,), 0, by="scene")


def test_a_limit_cuts_each_part_of_the_whole_split():
    """20 backgrounds x 5 objects at 70/15/15: 70 / 15 / 15 samples; a limit of 20 keeps 14 / 3 / 3 of them, each
    inside its own part, so no limit can move a training background into another run's test part."""
    whole = split(seed_scheme(20, 5), (0.7, 0.15, 0.15), seed=0)
    assert [len(part) for part in whole] == [70, 15, 15]
    cut = limited(whole, 20, seed=0)
    assert [len(part) for part in cut] == [14, 3, 3]
    for part, full in zip(cut, whole, strict=True):
        assert set(part) <= set(full) and part == [s for s in full if s in part]  # index order kept
    assert [len(part) for part in limited(whole, 7, seed=0)] == [5, 1, 1]  # quotas 4.9, 1.05, 1.05
    assert all(limited(whole, 1, seed=0))  # a part that had samples keeps one
    assert limited(whole, None, seed=0) == whole and limited(whole, 500, seed=0) == whole


def test_groups_dealt_counts_what_each_way_of_splitting_deals_whole():
    samples = [Sample(f"bg{b}/fg_{o}/{k}", f"bg/bg{b}.jpg", f"bg{b}/fg_{o}/overlay/{k}.jpg", "m", None)
               for b in (1, 2, 3) for o in (1, 2) for k in (1, 2)]  # fmt: skip
    assert groups_dealt(samples, "background") == "3 backgrounds"
    assert groups_dealt(samples, "object") == "2 objects"
    assert groups_dealt(samples, "both") == "3 backgrounds and 2 objects"
    assert groups_dealt(samples[:2], "both") == "1 background and 1 object"
