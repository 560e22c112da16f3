"""The field diff `pullbridge diff` prints for configured objects (pure logic)."""

from __future__ import annotations

from pullbridge.commands.diff import MAX_VALUE, field_diff, flatten
from pullbridge.repostate import hold_line, is_suspended, state_lines, suspended_line


def test_flatten_names_paths_and_keeps_empty_leaves():
    assert flatten({"a": {"b": [1, {"c": 2}]}, "e": {}, "f": []}) == {"a.b[0]": 1, "a.b[1].c": 2, "e": {}, "f": []}


def test_field_diff_ignores_server_bookkeeping_and_shows_changes():
    live = {"kind": "ConfigMap", "metadata": {"name": "x", "resourceVersion": "1", "managedFields": [{}],
                                              "labels": {"keep": "1", "gone": "1"}},
            "data": {"value": "1.0"}, "status": {"x": 1}}
    after = {"kind": "ConfigMap", "metadata": {"name": "x", "resourceVersion": "2", "labels": {"keep": "1"},
                                               "annotations": {"new": "y"}},
             "data": {"value": "2.0", "long": "z" * 100}}
    lines = field_diff(live, after)
    assert lines[0].startswith('data.long: (unset) -> "zzz') and lines[0].endswith('...')
    assert len(lines[0].split(" -> ")[1]) == MAX_VALUE
    assert lines[1:] == ['data.value: "1.0" -> "2.0"', 'metadata.annotations.new: (unset) -> "y"',
                         'metadata.labels.gone: "1" -> (unset)']
    assert field_diff(live, None) == [] and field_diff(None, after) == []


def test_state_lines_say_plainly_what_holds_a_repo():
    state = {"held_sha": "a" * 40, "held_at": "0", "held_by": "rollback", "suspended": "1", "suspended_at": "0"}
    assert hold_line("app", state) == ("HELD: app is held at aaaaaaaaaaaa by a rollback since 1970-01-01 "
                                       "00:00:00Z; pushes are not applied until `pullbridge resume app`")
    assert suspended_line("app", state).startswith("SUSPENDED: app is suspended since 1970")
    by_ops = suspended_line("app", {**state, "suspended_by": "ops"})
    assert by_ops.startswith("SUSPENDED: app is suspended by ops since")
    assert state_lines("app", state) == [suspended_line("app", state), hold_line("app", state)]
    assert state_lines("app", {"suspended": "0"}) == [] and not is_suspended({"suspended": ""})
    assert is_suspended({"suspended": "true"})


def test_field_diff_never_shows_secret_values():
    live = {"kind": "Secret", "metadata": {"name": "s", "annotations": {"note": "hunter2-old"}},
            "data": {"password": "aHVudGVyMg==", "gone": "eA=="}}
    after = {"kind": "Secret", "metadata": {"name": "s", "annotations": {"note": "hunter2-new"}},
             "data": {"password": "c2VjcmV0", "new": "eQ=="}}
    lines = field_diff(live, after)
    assert lines == ["data.gone: removed (Secret: value hidden)", "data.new: set (Secret: value hidden)",
                     "data.password: changed (Secret: value hidden)",
                     "metadata.annotations.note: changed (Secret: value hidden)"]
    assert not any(v in "".join(lines) for v in ("aHVudGVyMg", "c2VjcmV0", "hunter2", "eA==", "eQ=="))
