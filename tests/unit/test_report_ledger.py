import numpy as np

from actors.dual_vector import DualVectorActor
from cluster.retrieval.fairsync import DualVector, ExposureTargets
from cluster.retrieval.report_ledger import AppliedReports, Outbox
from cluster.storage import Storage


def test_applied_reports_count_each_number_once_in_any_order():
    applied = AppliedReports()
    for seq in (0, 1, 3, 4):
        assert applied.is_new("a", seq)
        applied.mark("a", seq)
    assert not applied.is_new("a", 1) and not applied.is_new("a", 3)
    assert applied.is_new("a", 2) and applied.is_new("b", 0), "2 failed and comes later; reporters are apart"
    assert applied.state_dict() == {"upto": {"a": 1}, "above": {"a": [3, 4]}}
    applied.mark("a", 2)
    assert applied.state_dict() == {"upto": {"a": 4}, "above": {}}
    restored = AppliedReports.from_state(applied.state_dict())
    assert not restored.is_new("a", 4) and restored.is_new("a", 5)
    assert AppliedReports.from_state(None).is_new("a", 0)


def test_outbox_keeps_what_was_not_acknowledged():
    outbox, other = Outbox(), Outbox()
    assert outbox.reporter != other.reporter
    first, second, third = outbox.add("g0", 1), outbox.add("g1", 2), outbox.add("g2", 3)
    assert (first, second, third) == (0, 1, 2)
    outbox.ack(second)
    outbox.ack(second)  # an answer that arrives twice is harmless
    assert outbox.waiting() == [(0, ("g0", 1)), (2, ("g2", 3))]


def _dual_vector_actor(folder):
    """The dual-vector actor's class in this process (no Ray), with its state in ``folder``."""
    targets = ExposureTargets(np.array([0.0, 20.0]), horizon=10, k=5)
    return DualVectorActor(Storage(folder), DualVector(targets, batch=2, lr=0.1, optimizer="adam"))


def test_the_dual_vector_actor_counts_a_report_sent_again_once(tmp_path):
    served = np.array([0, 0, 0, 1, 0])  # the groups of one request's five slots
    actor = _dual_vector_actor(tmp_path)
    first = actor.observe(served, 1, reporter="coordinator-a", seq=0)
    again = actor.observe(served, 1, reporter="coordinator-a", seq=0)
    assert np.array_equal(first[0], again[0]) and first[1] == again[1]
    assert actor.stats()["requests"] == 1 and actor.stats()["exposure"] == [4.0, 1.0]
    actor.observe(served, 1, reporter="coordinator-b", seq=0)  # another coordinator's own numbering
    assert actor.stats()["requests"] == 2

    # After a restart from its file, the reports already applied are still known.
    restarted = _dual_vector_actor(tmp_path)
    restarted.observe(served, 1, reporter="coordinator-a", seq=0)
    restarted.observe(served, 1, reporter="coordinator-b", seq=0)
    assert restarted.stats() == actor.stats()
    # And it steps μ on as the actor that never stopped does: Adam's moments came back too.
    for seq in range(1, 7):
        expected = actor.observe(served, 1, reporter="coordinator-a", seq=seq)
        got = restarted.observe(served, 1, reporter="coordinator-a", seq=seq)
        assert np.array_equal(got[0], expected[0]) and got[1] == expected[1], seq
    assert restarted.stats()["requests"] == 8 and restarted.stats()["mu_version"] == 4
