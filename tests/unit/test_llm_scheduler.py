"""FCFSScheduler: admission, limits, decode steps, finishing and aborts (pure logic, no model)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from worker.llm.scheduler import (
    FCFSScheduler,
    FinishReason,
    SchedulerLimits,
    SchedulerOutput,
    SequenceState,
    SequenceStatus,
)

EOS = 2


def seq(request_id: str, prompt_len: int = 5, max_new: int = 4) -> SequenceState:
    return SequenceState(
        request_id=request_id,
        prompt_ids=tuple(range(10, 10 + prompt_len)),
        max_new_tokens=max_new,
        stop_ids=frozenset({EOS}),
    )


def ids(output: SchedulerOutput) -> list[str]:
    return [s.request_id for s in output.sequences]


def run(sched: FCFSScheduler, output: SchedulerOutput, token: int = 7) -> list[SequenceState]:
    return sched.update_from_output(output, {s.request_id: token for s in output.sequences})


def make(
    max_num_seqs: int = 4,
    max_prefill_tokens: int = 100,
    kv_capacity_tokens: int = 1000,
    probe: dict[tuple[int, ...], int] | None = None,
) -> FCFSScheduler:
    limits = SchedulerLimits(max_num_seqs, max_prefill_tokens, kv_capacity_tokens)

    def lookup(prompt: Sequence[int]) -> int:
        return (probe or {}).get(tuple(prompt), 0)

    return FCFSScheduler(limits, prefix_probe=lookup if probe is not None else None)


def test_first_step_prefills_whole_prompts_in_arrival_order() -> None:
    sched = make()
    for name in ("a", "b", "c"):
        sched.add_request(seq(name, prompt_len=3 + len(name)))
    out = sched.schedule()
    assert ids(out) == ["a", "b", "c"]
    assert all(s.is_prefill and s.start_position == 0 for s in out.sequences)
    assert out.sequences[0].token_ids == (10, 11, 12, 13)
    assert out.num_prefill_tokens == 12
    assert sched.get_request_counts() == (3, 0)


def test_running_sequences_decode_one_token_each_then_new_ones_join() -> None:
    sched = make()
    sched.add_request(seq("a", prompt_len=5))
    first = sched.schedule()
    run(sched, first, token=40)
    sched.add_request(seq("b", prompt_len=3))
    second = sched.schedule()
    assert ids(second) == ["a", "b"]
    decode, prefill = second.sequences
    assert not decode.is_prefill
    assert decode.token_ids == (40,)
    assert decode.start_position == 5
    assert prefill.is_prefill
    assert prefill.token_ids == (10, 11, 12)
    run(sched, second, token=41)
    a = sched.get("a")
    assert a is not None
    assert a.num_computed == 6
    assert a.output_ids == [40, 41]


def test_a_request_added_after_schedule_waits_for_the_next_step() -> None:
    sched = make()
    sched.add_request(seq("a"))
    out = sched.schedule()
    sched.add_request(seq("b"))
    assert ids(out) == ["a"]
    run(sched, out)
    assert ids(sched.schedule()) == ["a", "b"]


def test_max_num_seqs_bounds_the_batch() -> None:
    sched = make(max_num_seqs=2)
    for name in "abc":
        sched.add_request(seq(name))
    out = sched.schedule()
    assert ids(out) == ["a", "b"]
    assert sched.get_request_counts() == (2, 1)
    run(sched, out)
    assert ids(sched.schedule()) == ["a", "b"]  # still full: c waits


def test_prefill_budget_limits_prompt_tokens_per_step() -> None:
    sched = make(max_prefill_tokens=10)
    for name in "abc":
        sched.add_request(seq(name, prompt_len=4))
    out = sched.schedule()
    assert ids(out) == ["a", "b"]  # 8 tokens; c (4 more) would make 12
    run(sched, out)
    out2 = sched.schedule()
    assert ids(out2) == ["a", "b", "c"]
    assert out2.num_prefill_tokens == 4


def test_a_prompt_longer_than_the_budget_runs_alone_rather_than_never() -> None:
    sched = make(max_prefill_tokens=10)
    sched.add_request(seq("long", prompt_len=30))
    sched.add_request(seq("short", prompt_len=2))
    out = sched.schedule()
    assert ids(out) == ["long"]
    run(sched, out)
    assert ids(sched.schedule()) == ["long", "short"]


def test_admission_is_first_come_first_served_without_skipping() -> None:
    sched = make(max_prefill_tokens=10)
    sched.add_request(seq("a", prompt_len=6))
    sched.add_request(seq("big", prompt_len=8))
    sched.add_request(seq("tiny", prompt_len=1))
    out = sched.schedule()
    # big does not fit after a; tiny would, but must not overtake big.
    assert ids(out) == ["a"]


def test_kv_reservation_holds_back_admission_until_room_frees() -> None:
    # each sequence reserves prompt + max_new - 1 = 5 + 4 - 1 = 8 tokens
    sched = make(kv_capacity_tokens=16)
    for name in "abc":
        sched.add_request(seq(name))
    out = sched.schedule()
    assert ids(out) == ["a", "b"]
    assert sched.reserved_kv_tokens == 16
    sched.finish_requests(["a"])
    assert sched.reserved_kv_tokens == 8
    run(sched, out)  # a was aborted after the step was made: skipped
    out2 = sched.schedule()
    assert ids(out2) == ["b", "c"]


def test_a_request_that_can_never_fit_is_refused_at_once() -> None:
    sched = make(kv_capacity_tokens=7)
    with pytest.raises(ValueError, match="needs 8 KV tokens"):
        sched.add_request(seq("a"))
    assert not sched.has_unfinished_requests()


def test_duplicate_ids_are_refused_until_finished() -> None:
    sched = make()
    sched.add_request(seq("a", max_new=1))
    with pytest.raises(ValueError, match="already queued"):
        sched.add_request(seq("a"))
    (done,) = run(sched, sched.schedule())
    assert done.finish_reason is FinishReason.LENGTH
    sched.add_request(seq("a"))  # the id is free again


def test_finish_on_stop_token_and_on_length() -> None:
    sched = make()
    sched.add_request(seq("stops", max_new=10))
    sched.add_request(seq("long", max_new=2))
    out = sched.schedule()
    assert sched.update_from_output(out, {"stops": 9, "long": 9}) == []
    out = sched.schedule()
    done = sched.update_from_output(out, {"stops": EOS, "long": 9})
    assert [(s.request_id, s.finish_reason) for s in done] == [
        ("stops", FinishReason.STOP),
        ("long", FinishReason.LENGTH),
    ]
    stops = done[0]
    assert stops.output_ids == [9, EOS]  # the stop token is part of the result
    assert stops.status is SequenceStatus.FINISHED
    assert not sched.has_unfinished_requests()
    assert sched.reserved_kv_tokens == 0
    assert sched.schedule().is_empty


def test_num_computed_counts_prompt_then_fed_back_tokens() -> None:
    sched = make()
    sched.add_request(seq("a", prompt_len=5, max_new=5))
    for expected in (5, 6, 7):
        run(sched, sched.schedule())
        a = sched.get("a")
        assert a is not None
        assert a.num_computed == expected


def test_abort_waiting_and_running_requests() -> None:
    sched = make(max_num_seqs=1)
    sched.add_request(seq("running"))
    sched.add_request(seq("waiting"))
    sched.schedule()
    finished = sched.finish_requests(["waiting", "running", "unknown"])
    assert [s.request_id for s in finished] == ["waiting", "running"]
    assert all(s.finish_reason is FinishReason.ABORT for s in finished)
    assert sched.get_request_counts() == (0, 0)
    assert sched.reserved_kv_tokens == 0


def test_missing_sampled_token_is_an_error() -> None:
    sched = make()
    sched.add_request(seq("a"))
    out = sched.schedule()
    with pytest.raises(KeyError):
        sched.update_from_output(out, {})


def test_prefix_probe_lowers_the_cost_and_sets_the_start() -> None:
    prompt = tuple(range(10, 18))
    sched = make(max_prefill_tokens=5, probe={prompt: 4})
    sched.add_request(seq("cached", prompt_len=8))
    sched.add_request(seq("other", prompt_len=1))
    out = sched.schedule()
    first = out.sequences[0]
    assert first.cached_prefix == 4
    assert first.start_position == 4
    assert first.token_ids == prompt[4:]
    assert ids(out) == ["cached", "other"]  # 4 + 1 tokens fit the budget of 5
    run(sched, out)
    cached = sched.get("cached")
    assert cached is not None
    assert cached.num_computed == 8
    assert cached.cached_prefix == 4


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_num_seqs"):
        SchedulerLimits(max_num_seqs=0)


def test_empty_prompt_is_refused() -> None:
    with pytest.raises(ValueError, match="empty prompt"):
        SequenceState("x", (), 4, frozenset())
