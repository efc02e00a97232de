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


def _chunked(T: int = 6):
    """A robot with H = 4 action chunks and S = 3 decisions per policy step: rows 0..3 one chunk, 4..5 the next."""
    spec = make_spec("robot-0")
    spec.chunk, spec.num_decisions, spec.trace_dim = 4, 3, 8
    piece = make_piece(T)
    piece.chunk_step = (np.arange(T) % 4).astype(np.uint16)
    piece.chunk_action = np.zeros((T, 4 * 2), np.float32)
    piece.logp = np.zeros((T, 3), np.float32)
    piece.trace = np.zeros((T, 8), np.float32)
    return spec, piece


def test_chunk_fields_roundtrip_and_are_checked():
    spec, piece = _chunked()
    piece.logp[4] = [-1.0, -2.0, -3.0]
    out = decode_chunk(spec, encode_chunk(spec, piece, "s", "ep", 0, True, reset_seed=7))
    np.testing.assert_array_equal(out.chunk_step, piece.chunk_step)
    assert out.logp.shape == (6, 3) and out.logp[4].tolist() == [-1.0, -2.0, -3.0]
    assert encode_chunk(spec, piece, "s", "ep", 0, True, reset_seed=7).reset_seed == 7
    missing = encode_chunk(spec, piece, "s", "ep", 0, True)
    missing.chunk_step = b""
    with pytest.raises(PayloadError, match=r"chunk_step: required when the robot registered chunk=4"):
        decode_chunk(spec, missing)
    piece.chunk_step[4] = 2  # a chunk cannot jump from row 3 to row 2 of the next one
    with pytest.raises(PayloadError, match=r"chunk_step: 2 at step 4 after 3, expected 0 or 4"):
        decode_chunk(spec, encode_chunk(spec, piece, "s", "ep", 0, True))
    spec, piece = _chunked()
    piece.logp = np.zeros(6, np.float32)  # one summed log-prob per step: the old wire, S = 1
    with pytest.raises(PayloadError, match=r"logp: 24 bytes, expected shape \(6, 3\) float32"):
        decode_chunk(spec, encode_chunk(spec, piece, "s", "ep", 0, True))
