from cluster.retrieval.report_ledger import AppliedReports, Outbox


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
