"""Ids sort in creation order and never collide."""

import multiprocessing as mp

from stalwart.ids import new_id, new_token


def _ids(n):
    return [new_id() for _ in range(n)]


def test_ids_from_one_process_sort_in_creation_order():
    ids = _ids(20_000)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(len(i) == 26 for i in ids)


def test_ids_from_several_processes_are_unique():
    with mp.get_context("spawn").Pool(3) as pool:
        batches = pool.map(_ids, [5000] * 3)
    every = [i for b in batches for i in b]
    assert len(set(every)) == len(every)


def test_tokens_are_unique():
    assert len({new_token() for _ in range(10_000)}) == 10_000
