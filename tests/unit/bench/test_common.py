"""The benchmarks' CPU accounting over a window."""

from __future__ import annotations

import os

from bench.common import cpu_used_s, tree_cpu_by_pid


def test_a_child_that_ends_in_the_window_takes_nothing_away() -> None:
    """A PostgreSQL backend that ended during the window (another client's connection) made
    the difference of the tree's sums negative: -405 us a message in a benchmark's figure."""
    before = {1: 10.0, 2: 4.0, 3: 7.5}
    after = {1: 10.5, 2: 4.25}  # 3 ended
    assert cpu_used_s(before, after) == 0.75


def test_a_child_that_starts_in_the_window_or_reuses_an_id_counts_from_zero() -> None:
    assert cpu_used_s({1: 1.0}, {1: 1.5, 9: 0.25}) == 0.75
    assert cpu_used_s({1: 1.0, 5: 3.0}, {1: 1.0, 5: 0.5}) == 0.5  # 5 is another process now


def test_the_tree_of_this_process() -> None:
    tree = tree_cpu_by_pid(os.getpid())
    assert os.getpid() in tree and all(t >= 0 for t in tree.values())
    assert cpu_used_s(tree, tree_cpu_by_pid(os.getpid())) >= 0
