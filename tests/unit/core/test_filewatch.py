"""Noticing that configuration files changed, by polling their status: a change is
reported once, after the files stayed the same for `settle_s`. The clock is the test's
(`now` passed explicitly): nothing here sleeps."""

from __future__ import annotations

import os
from pathlib import Path

from extproc.core.filewatch import FileWatch

SETTLE = 0.5


def write(path: Path, text: str, mtime_ns: int | None = None) -> None:
    """Write in place (same inode); `mtime_ns` pins the modification time."""
    path.write_text(text)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def replace(path: Path, text: str) -> None:
    """A new file renamed over `path`, as editors and ConfigMap updates do."""
    staging = path.with_name(f".{path.name}.new")
    staging.write_text(text)
    os.replace(staging, path)


def reported(watch: FileWatch, *times: float) -> list[float]:
    """The poll times, among `times`, at which a change was reported."""
    return [t for t in times if watch.changed(t)]


def test_unchanged_files_never_report(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    write(policy, "policies: []\n")
    watch = FileWatch([str(policy), str(tmp_path / "absent.yaml")], settle_s=SETTLE)
    assert reported(watch, 0.0, 0.4, 1.0, 100.0) == []


def test_paths_are_deduplicated_and_empty_ones_dropped(tmp_path: Path) -> None:
    policy = str(tmp_path / "policy.yaml")
    assert FileWatch([policy, "", policy, "keys.yaml"]).paths == (policy, "keys.yaml")
    assert FileWatch(["", ""]).paths == ()


def test_a_change_is_reported_once_it_stayed_the_same_for_settle_s(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    write(policy, "a\n")
    watch = FileWatch([str(policy)], settle_s=SETTLE)
    write(policy, "a longer text\n")
    assert not watch.changed(10.0)  # first seen: not settled yet
    assert not watch.changed(10.3)
    assert not watch.changed(10.49)
    assert watch.changed(10.5)  # settle_s after it was first seen
    # Reported once: the new state is the one watched from now on.
    assert reported(watch, 10.6, 11.0, 50.0) == []


def test_os_replace_of_a_new_file_counts(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    write(policy, "same text\n")
    stat = policy.stat()
    watch = FileWatch([str(policy)], settle_s=SETTLE)
    replace(policy, "same text\n")
    # The same size, and the same mtime: only the inode tells the new file apart.
    os.utime(policy, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert policy.stat().st_ino != stat.st_ino
    assert reported(watch, 0.0, 0.2, 0.5, 0.9) == [0.5]


def test_a_change_in_place_with_the_same_size_counts_by_its_mtime(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    write(policy, "aaaa\n", mtime_ns=1_000_000_000)
    watch = FileWatch([str(policy)], settle_s=SETTLE)
    write(policy, "bbbb\n", mtime_ns=2_000_000_000)
    assert reported(watch, 0.0, 0.5, 1.0) == [0.5]


def test_a_deleted_file_counts_and_so_does_its_return(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    write(keys, "callers: []\n")
    watch = FileWatch([str(keys)], settle_s=SETTLE)
    keys.unlink()
    assert reported(watch, 1.0, 1.2, 1.5, 2.0) == [1.5]
    write(keys, "callers: []\n")  # created again: absent -> present is a change too
    assert reported(watch, 3.0, 3.5, 4.0) == [3.5]


def test_a_file_created_after_the_watch_started_counts(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    watch = FileWatch([str(keys)], settle_s=SETTLE)
    assert not watch.changed(0.0)
    write(keys, "callers: []\n")
    assert reported(watch, 1.0, 1.5) == [1.5]


def test_a_retargeted_symlink_counts(tmp_path: Path) -> None:
    """A Kubernetes ConfigMap swaps a `..data` symlink: the watched path is followed, so
    a new target counts, even one of the same size and modification time."""
    first, second = tmp_path / "v1", tmp_path / "v2"
    for directory in (first, second):
        directory.mkdir()
        write(directory / "policy.yaml", "policies: []\n", mtime_ns=1_000_000_000)
    data = tmp_path / "..data"
    data.symlink_to(first.name)
    policy = tmp_path / "policy.yaml"
    policy.symlink_to("..data/policy.yaml")
    watch = FileWatch([str(policy)], settle_s=SETTLE)
    assert not watch.changed(0.0)

    swap = tmp_path / "..data_tmp"
    swap.symlink_to(second.name)
    os.replace(swap, data)  # the atomic swap kubelet does
    assert policy.read_text() == "policies: []\n"
    assert reported(watch, 1.0, 1.4, 1.5, 2.0) == [1.5]


def test_repeated_changes_while_unsettled_report_once(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    write(policy, "v0\n", mtime_ns=1_000_000_000)
    watch = FileWatch([str(policy)], settle_s=SETTLE)
    # An editor writing in steps: each step restarts the wait.
    write(policy, "v1 longer\n", mtime_ns=2_000_000_000)
    assert not watch.changed(0.0)
    write(policy, "v2 longer still\n", mtime_ns=3_000_000_000)
    assert not watch.changed(0.4)
    write(policy, "v3 the final text\n", mtime_ns=4_000_000_000)
    assert not watch.changed(0.8)  # 0.8 s after the first step, but the last is new
    assert not watch.changed(1.2)
    assert reported(watch, 1.3, 1.4, 2.0, 10.0) == [1.3]


def test_a_change_undone_before_it_settled_is_not_reported(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    write(policy, "v0\n", mtime_ns=1_000_000_000)
    watch = FileWatch([str(policy)], settle_s=SETTLE)
    write(policy, "v1 longer\n", mtime_ns=2_000_000_000)
    assert not watch.changed(0.0)
    write(policy, "v0\n", mtime_ns=1_000_000_000)  # back as it was (same inode)
    assert reported(watch, 0.6, 1.0, 5.0) == []


def test_any_of_several_files_counts(tmp_path: Path) -> None:
    policy, keys = tmp_path / "policy.yaml", tmp_path / "keys.yaml"
    write(policy, "policies: []\n")
    write(keys, "callers: []\n")
    watch = FileWatch([str(policy), str(keys)], settle_s=SETTLE)
    replace(keys, "callers: [] # edited\n")
    assert reported(watch, 0.0, 0.5) == [0.5]
    replace(policy, "policies: [] # edited\n")
    assert reported(watch, 1.0, 1.5) == [1.5]


def test_zero_settle_reports_on_the_second_poll_that_sees_the_change(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    write(policy, "a\n")
    watch = FileWatch([str(policy)], settle_s=0)
    replace(policy, "b\n")
    assert reported(watch, 5.0, 5.0) == [5.0]
    assert watch.changed(5.0) is False


def test_differs_tells_a_change_at_once_unsettled(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("policies: []\n")
    watch = FileWatch([str(path)])
    assert not watch.differs()
    path.write_text("policies: [{type: noop}]\n")
    assert watch.differs()
    assert not watch.changed(0.0)  # changed() still waits for the file to settle
