"""Bad robots are rejected with a specific error while a good robot's stream goes on untouched (TLS on)."""

from __future__ import annotations

import threading

import grpc
import numpy as np
import pytest
from fleet_helpers import make_piece, make_spec, stored_keys, wait_until

from fleet.client import FleetClient, make_channel
from fleet.codec import encode_chunk
from fleet.proto import fleet_pb2 as pb
from fleet.proto import fleet_pb2_grpc as pb_grpc
from fleet.security import call_metadata

CAMS = (("front", 12, 16),)


def _stub(learner, certs, max_bytes=64 << 20):
    return pb_grpc.LearnerStub(make_channel(learner.address, str(certs["ca"]), max_bytes))


def _register(stub, robot_id, token, cams=()):
    return stub.Register(pb.RegisterRequest(spec=make_spec(robot_id, cams)), metadata=call_metadata(robot_id, token),
                         timeout=10).session_id


def _send(stub, robot_id, token, chunk):
    return list(stub.StreamEpisodes(iter([chunk]), metadata=call_metadata(robot_id, token), timeout=10))


def test_bad_robots_rejected_good_robot_unaffected(learner, certs, tokens, tmp_path):
    good = FleetClient(learner.address, make_spec("robot-0"), tokens["robot-0"], tmp_path / "spool0",
                       ca=str(certs["ca"]), subscribe=False).start()
    episodes = 30
    submitted: list[str] = []

    def stream_good():
        for i in range(episodes):
            eid = good.new_episode_id()
            good.submit(eid, 0, True, make_piece(20, seed=i))
            submitted.append(eid)
            threading.Event().wait(0.02)

    feeder = threading.Thread(target=stream_good)
    feeder.start()
    stub = _stub(learner, certs)
    errors: dict[str, grpc.RpcError] = {}

    # 1. wrong token
    with pytest.raises(grpc.RpcError) as e:
        _register(stub, "robot-1", "not-the-token")
    errors["token"] = e.value
    # 2. a robot writing under another robot's id (with its own valid token and session)
    s1 = _register(stub, "robot-1", tokens["robot-1"])
    forged = encode_chunk(make_spec("robot-0"), make_piece(5), s1, "forged", 0, True)
    with pytest.raises(grpc.RpcError) as e:
        _send(stub, "robot-1", tokens["robot-1"], forged)
    errors["impersonate"] = e.value
    with pytest.raises(grpc.RpcError) as e:
        _register(stub, "robot-1", tokens["robot-1"]) and stub.Register(
            pb.RegisterRequest(spec=make_spec("robot-0")), metadata=call_metadata("robot-1", tokens["robot-1"]))
    errors["register_as"] = e.value
    # 3. a message over the learner's 1 MiB limit
    huge = encode_chunk(make_spec("robot-1"), make_piece(60_000), s1, "huge", 0, True)
    assert huge.ByteSize() > 1 << 20
    with pytest.raises(grpc.RpcError) as e:
        _send(stub, "robot-1", tokens["robot-1"], huge)
    errors["oversized"] = e.value
    # 4. a NaN action
    nan = make_piece(5)
    nan.action[3, 0] = np.nan
    with pytest.raises(grpc.RpcError) as e:
        _send(stub, "robot-1", tokens["robot-1"], encode_chunk(make_spec("robot-1"), nan, s1, "nan", 0, True))
    errors["nan"] = e.value
    # 5. a wrong-shaped image (robot-2 registered a 12x16 camera, sends 12x15)
    s2 = _register(stub, "robot-2", tokens["robot-2"], CAMS)
    bad_img = encode_chunk(make_spec("robot-2", (("front", 12, 15),)), make_piece(3, cameras=(("front", 12, 15),)),
                           s2, "img", 0, True)
    with pytest.raises(grpc.RpcError) as e:
        _send(stub, "robot-2", tokens["robot-2"], bad_img)
    errors["image"] = e.value

    expected = {
        "token": (grpc.StatusCode.UNAUTHENTICATED, "robot 'robot-1': missing or wrong token"),
        "impersonate": (grpc.StatusCode.PERMISSION_DENIED, "robot 'robot-1' cannot write episodes as 'robot-0'"),
        "register_as": (grpc.StatusCode.PERMISSION_DENIED, "robot 'robot-1' cannot register as 'robot-0'"),
        "oversized": (grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max"),
        "nan": (grpc.StatusCode.INVALID_ARGUMENT, "action: non-finite value (NaN/Inf) at index [3, 0]"),
        "image": (grpc.StatusCode.INVALID_ARGUMENT, "observation.images.front: step 0 has shape (12, 15, 3)"),
    }
    for name, (code, text) in expected.items():
        assert errors[name].code() == code, (name, errors[name])
        assert text in errors[name].details(), (name, errors[name].details())

    feeder.join()
    wait_until(good.drained, 60, what="good robot's spool to drain")
    good.stop()
    # The good robot's one stream was never broken, and everything it sent is stored exactly once.
    assert good.last_error == "" and good.rejected == [] and good.acked == episodes and good.duplicates == 0
    keys = stored_keys(learner.store.root)
    assert sorted(e for r, e, _ in keys if r == "robot-0") == sorted(submitted)
    assert not [k for k in keys if k[0] != "robot-0"]  # nothing of the bad robots reached the store


def test_client_sets_a_rejected_chunk_aside_and_goes_on(learner, certs, tokens, tmp_path):
    client = FleetClient(learner.address, make_spec("robot-1"), tokens["robot-1"], tmp_path / "spool1",
                         ca=str(certs["ca"]), subscribe=False)
    bad = make_piece(4)
    bad.state[0, 0] = np.inf
    client.submit("bad-episode", 0, True, bad)
    client.submit("good-episode", 0, True, make_piece(4))
    client.start()
    wait_until(client.drained, 60, what="spool to drain")
    client.stop()
    assert len(client.rejected) == 1 and "bad-episode/0: INVALID_ARGUMENT" in client.rejected[0]
    assert "state: non-finite" in client.rejected[0]
    assert len(list((tmp_path / "spool1" / "rejected").glob("*.pb"))) == 1
    assert [k[1] for k in stored_keys(learner.store.root)] == ["good-episode"]
