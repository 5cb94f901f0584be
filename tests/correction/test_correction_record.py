"""Corrected-slice record: marking, JSON round trip, supervised mask, command-line syntax."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_freqseg.correction import CorrectionRecord, format_slice_spec, parse_slice_spec


def test_mark_unmark_and_query():
    r = CorrectionRecord(shape=(10, 20, 30))
    r.mark("z", 4)
    r.mark(0, 2)
    r.mark("x", 29)
    assert r.is_marked(0, 4) and r.is_marked("z", 2) and r.is_marked(2, 29)
    assert not r.is_marked("y", 4)
    assert r.indices("z") == [2, 4] and r.indices(1) == [] and len(r) == 3
    assert list(r) == [(0, 2), (0, 4), (2, 29)]
    r.unmark("z", 4)
    r.unmark("z", 4)  # unmarking twice is harmless
    assert r.indices(0) == [2]
    with pytest.raises(ValueError):
        r.mark("z", 10)
    with pytest.raises(ValueError):
        r.mark("t", 1)


def test_json_round_trip_keeps_slices_and_times():
    r = CorrectionRecord(shape=(10, 20, 30))
    r.mark("z", 3, when=100.5)
    r.mark("y", 7, when=200.0)
    back = CorrectionRecord.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back == r
    assert back.to_dict()["slices"][0] == {"axis": "z", "index": 3, "marked_at": 100.5}
    with pytest.raises(ValueError):
        CorrectionRecord.from_dict({"format": "something else"})


def test_labeled_mask_is_exactly_the_corrected_slices():
    r = CorrectionRecord(shape=(6, 7, 8))
    r.mark("z", 1)
    r.mark("x", 5)
    mask = r.labeled_mask()
    assert mask.shape == (6, 7, 8) and mask.dtype == bool
    assert mask[1].all() and mask[:, :, 5].all()
    assert mask.sum() == 7 * 8 + 6 * 7 - 7  # the two planes share one line
    assert not mask[0, :, :5].any()


def test_slice_spec_parse_format_and_errors():
    assert parse_slice_spec("z:12,40,77") == {"z": [12, 40, 77]}
    assert parse_slice_spec(" z: 40 ; x:3 ; z:12 ") == {"z": [12, 40], "x": [3]}
    with pytest.raises(ValueError, match="slice z=12 is named twice"):
        parse_slice_spec("z:40,12;x:3;z:12")
    assert format_slice_spec({"z": [40, 12], "y": [], "x": [3]}) == "z:12,40;x:3"
    for bad in ["", "12,40", "q:1", "z:", "z:1;a", "z:1.5"]:
        with pytest.raises(ValueError):
            parse_slice_spec(bad)
    r = CorrectionRecord.from_spec((80, 10, 10), "z:12,40,77")
    assert r.indices("z") == [12, 40, 77] and r.spec() == "z:12,40,77"
    with pytest.raises(ValueError):
        CorrectionRecord.from_spec((50, 10, 10), "z:12,40,77")
    np.testing.assert_array_equal(np.nonzero(r.labeled_mask().any(axis=(1, 2)))[0], [12, 40, 77])
