"""Weights reach robots in pieces with a checksum; a corrupt version is refused and the last good policy kept."""

from __future__ import annotations

import torch
from conftest import InProcessLearner
from fleet_helpers import A, D, make_spec, wait_until

from fleet.client import FleetClient
from fleet.learner import LearnerService
from fleet.robot import InferenceWorker
from fleet.weights import PolicyAssembler, WeightPublisher
from robopolicy.policy import Policy, PolicyConfig
from robopolicy.types import OBS_STATE


def _policy(seed: int) -> Policy:
    torch.manual_seed(seed)
    return Policy(PolicyConfig(state_dim=D, action_dim=A, chunk=1, action_low=[-1.0] * A, action_high=[1.0] * A))


def _mean_action(policy: Policy) -> torch.Tensor:
    with torch.no_grad():
        return policy.act({OBS_STATE: torch.ones(1, D)}, deterministic=True).actions


class CorruptingService(LearnerService):
    """Flips one byte of version 1's weights after the checksum was computed (a corrupted transfer)."""

    def _pieces(self, context, version):
        for i, msg in enumerate(super()._pieces(context, version)):
            if version == 1 and i == 0:
                data = bytearray(msg.data)
                data[-1] ^= 0xFF
                msg.data = bytes(data)
            yield msg


def test_pieces_reassemble_to_identical_policy(tmp_path):
    pub = WeightPublisher(tmp_path)
    policy = _policy(0)
    v = pub.publish(policy)
    asm = PolicyAssembler()
    outs = [asm.add(m) for m in pub.pieces(v, piece_bytes=1000)]
    assert all(o is None for o in outs[:-1]) and len(outs) > 2
    version, loaded, _ = outs[-1]
    assert version == v == 0
    torch.testing.assert_close(_mean_action(loaded), _mean_action(policy), rtol=0, atol=0)
    assert WeightPublisher(tmp_path).latest == 0  # versions survive a restart


def test_corrupt_weights_refused_last_good_kept(tmp_path, certs, tokens):
    learner = InProcessLearner(tmp_path / "store", certs, service_cls=CorruptingService)
    good0, bad1, good2 = _policy(0), _policy(1), _policy(2)
    learner.publisher.publish(good0)
    client = FleetClient(learner.address, make_spec("robot-0"), tokens["robot-0"], tmp_path / "spool",
                         ca=str(certs["ca"]))
    version, policy, _ = client.fetch_policy()
    worker = InferenceWorker(policy, version, deterministic=True)
    client.policy_version, client.on_policy = version, worker.set_policy
    client.start()
    try:
        learner.publisher.publish(bad1)
        wait_until(lambda: client.weights_rejected == 1, 60, what="the corrupt version to be refused")
        assert "version 1: sha256" in client.last_weights_error and client.policy_version == 0
        worker.request(torch.ones(D).numpy())
        chunk = worker.result()
        assert chunk.version == 0  # still the last good policy
        torch.testing.assert_close(torch.as_tensor(chunk.actions)[None], _mean_action(good0), rtol=0, atol=0)
        learner.publisher.publish(good2)
        wait_until(lambda: client.policy_version == 2, 60, what="version 2")
        worker.request(torch.ones(D).numpy())
        chunk = worker.result()
        assert chunk.version == 2
        torch.testing.assert_close(torch.as_tensor(chunk.actions)[None], _mean_action(good2), rtol=0, atol=0)
    finally:
        worker.close()
        client.stop()
        learner.close()


def test_skip_weight_init_from_two_threads_restores_the_real_init():
    """Two robot clients in one process loading at once: A enters, B enters, A leaves, B leaves."""
    import threading

    from fleet.weights import skip_weight_init

    real = torch.nn.init.orthogonal_
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def a():
        with skip_weight_init():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def b():
        a_in.wait(5)
        with skip_weight_init():
            b_in.set()
            a_out.wait(5)
            assert torch.nn.init.orthogonal_ is not real  # still patched while B builds

    threads = [threading.Thread(target=f) for f in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert torch.nn.init.orthogonal_ is real
