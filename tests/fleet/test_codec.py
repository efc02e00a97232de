"""Payload validation: every bad field is named; a good chunk round-trips exactly."""

from __future__ import annotations

import numpy as np
import pytest
from fleet_helpers import make_piece, make_spec

from fleet.codec import PayloadError, check_spec, decode_chunk, encode_chunk

CAMS = (("front", 12, 16),)


def test_roundtrip_is_exact():
    spec = make_spec("robot-0", CAMS)
    piece = make_piece(7, seed=1, cameras=CAMS)
    out = decode_chunk(spec, encode_chunk(spec, piece, "s", "ep", 0, True))
    for name in ("state", "action", "reward", "done", "policy_version", "timestamp"):
        np.testing.assert_array_equal(getattr(out, name), getattr(piece, name))
    np.testing.assert_array_equal(out.images["front"], piece.images["front"])  # PNG is lossless


@pytest.mark.parametrize("field,value,match", [
    ("action", np.nan, r"action: non-finite value \(NaN/Inf\) at index \[2, 1\]"),
    ("state", np.inf, r"state: non-finite"),
    ("action", 5.0, r"action: value 5 at step 2, dim 1 outside the registered bounds"),
])
def test_bad_values_are_named(field, value, match):
    spec = make_spec("robot-0")
    piece = make_piece(4)
    getattr(piece, field)[2, 1] = value
    with pytest.raises(PayloadError, match=match):
        decode_chunk(spec, encode_chunk(spec, piece, "s", "ep", 0, True))


def test_wrong_sizes_are_named():
    spec = make_spec("robot-0", CAMS)
    msg = encode_chunk(spec, make_piece(4, cameras=CAMS), "s", "ep", 0, True)
    short = type(msg)()
    short.CopyFrom(msg)
    short.state = short.state[:-4]
    with pytest.raises(PayloadError, match=r"state: 76 bytes, expected shape \(4, 5\) float32"):
        decode_chunk(spec, short)
    wrong_cam = make_piece(4, cameras=(("front", 12, 15),))
    with pytest.raises(PayloadError, match=r"observation.images.front: step 0 has shape \(12, 15, 3\), expected "
                                           r"\(12, 16, 3\)"):
        decode_chunk(spec, encode_chunk(make_spec("robot-0", (("front", 12, 15),)), wrong_cam, "s", "ep", 0, True))
    garbage = type(msg)()
    garbage.CopyFrom(msg)
    garbage.images[1].data = b"not an image"
    with pytest.raises(PayloadError, match="step 1 is not a decodable png image"):
        decode_chunk(spec, garbage)


def test_spec_checks():
    limits = {"max_dim": 64, "max_image_side": 128}
    check_spec(make_spec("robot-0", CAMS), limits)
    with pytest.raises(PayloadError, match="spec.robot_id"):
        check_spec(make_spec("robot 0/../x"), limits)
    big = make_spec("robot-0", (("front", 512, 512),))
    with pytest.raises(PayloadError, match=r"spec.cameras\[front\]: 512x512"):
        check_spec(big, limits)
