"""Lease balancing and parent-before-child eligibility (pure functions of the Kinesis source). No I/O."""

from __future__ import annotations

from collections import Counter

from workers.sources.kinesis_leases import SHARD_END, Lease, eligible, plan, targets


def _lease(shard: str, owner: str | None = None, parents: tuple[str, ...] = (), cp: str | None = None) -> Lease:
    return Lease(key=f"p/s/{shard}", shard=shard, owner=owner, counter=1, checkpoint=cp, parents=parents)


def _simulate(leases: list[Lease], workers: list[str], rounds: int = 10) -> dict[str, str | None]:
    owners = {lease.shard: lease.owner for lease in leases}
    for _ in range(rounds):
        for worker in workers:
            current = [Lease(key=f"p/s/{s}", shard=s, owner=o) for s, o in sorted(owners.items())]
            decision = plan(current, worker, set(), set(owners))
            for lease in [*decision.take, *([decision.steal] if decision.steal else [])]:
                owners[lease.shard] = worker
    return owners


def test_targets_split_the_remainder_by_worker_id() -> None:
    assert targets(["b", "a", "c"], 6) == {"a": 2, "b": 2, "c": 2}
    assert targets(["b", "a", "c"], 4) == {"a": 2, "b": 1, "c": 1}


def test_three_workers_six_shards_end_two_each() -> None:
    leases = [_lease(f"s{i}") for i in range(6)]
    owners = _simulate(leases, ["w1", "w2", "w3"])
    assert sorted(Counter(owners.values()).values()) == [2, 2, 2]


def test_new_worker_steals_one_at_a_time_until_balanced() -> None:
    leases = [_lease(f"s{i}", owner="w1" if i < 3 else "w2") for i in range(6)]
    decision = plan(leases, "w3", set(), {lease.shard for lease in leases})
    assert decision.take == ()
    assert decision.steal is not None
    owners = _simulate(leases, ["w3", "w1", "w2"])
    assert sorted(Counter(owners.values()).values()) == [2, 2, 2]


def test_expired_leases_are_taken_up_to_target() -> None:
    leases = [_lease(f"s{i}", owner=["w1", "w2", "dead"][i % 3]) for i in range(6)]
    expired = {lease.key for lease in leases if lease.owner == "dead"}
    decision = plan(leases, "w1", expired, {lease.shard for lease in leases})
    assert len(decision.take) == 1  # 6 shards / 2 live workers = 3 each; w1 holds 2
    assert decision.take[0].owner == "dead"


def test_balanced_worker_does_nothing() -> None:
    leases = [_lease(f"s{i}", owner=["w1", "w2"][i % 2]) for i in range(4)]
    decision = plan(leases, "w1", set(), {lease.shard for lease in leases})
    assert decision.take == ()
    assert decision.steal is None


def test_children_wait_for_every_parent_at_shard_end() -> None:
    parent_a = _lease("a", cp=SHARD_END)
    parent_b = _lease("b", cp="123")
    child = _lease("c", parents=("a", "b"))
    by_shard = {lease.shard: lease for lease in (parent_a, parent_b, child)}
    assert not eligible(child, by_shard, {"a", "b", "c"})
    by_shard["b"] = _lease("b", cp=SHARD_END)
    assert eligible(child, by_shard, {"a", "b", "c"})
    assert not eligible(by_shard["a"], by_shard, {"a", "b", "c"})  # finished shards are not processed again


def test_parent_without_lease_blocks_only_while_it_exists_in_the_stream() -> None:
    child = _lease("c", parents=("gone",))
    assert not eligible(child, {"c": child}, {"gone", "c"})
    assert eligible(child, {"c": child}, {"c"})  # trimmed parent: nothing left to read


def test_ineligible_children_are_not_counted_nor_taken() -> None:
    leases = [_lease("p", owner="w2"), _lease("c1", parents=("p",)), _lease("c2", parents=("p",))]
    decision = plan(leases, "w1", set(), {"p", "c1", "c2"})
    assert decision.take == ()
    assert decision.steal is None
