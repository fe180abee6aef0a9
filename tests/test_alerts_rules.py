"""Alert rules: validation that names the field and the accepted values, defaults, and TOML rules files."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.alerts.rules import (
    MAX_RULE_SECONDS,
    MB,
    Rule,
    RuleError,
    default_rules,
    load_rules_file,
    make_rule,
    parse_rules,
)
from pipeline.errors import ConfigError


def test_make_rule_defaults_keep_the_plans_meaning() -> None:
    """add_threshold's defaults: the max over a minute, no pending time, a stable generated name."""
    rule = make_rule("request_duration", "gt", 3000, "critical")
    assert (rule.aggregation, rule.window_seconds, rule.for_seconds, rule.keep_firing_seconds) == ("max", 60, 0, 0)
    assert rule.name == "request_duration_max_gt_3000"
    assert rule.source == "requests" and rule.breached(3000.5) and not rule.breached(3000)


def test_make_rule_normalises_by_and_where() -> None:
    """`by` may be one string; `where` values compare as text (ints and bools converted), sorted by key."""
    rule = make_rule("query_duration", "gte", 5, "info", by="fingerprint", where={"success": False, "pid": 12})
    assert rule.by == ("fingerprint",)
    assert rule.where == (("pid", "12"), ("success", "false"))
    assert rule.key_names == ("fingerprint", "success", "pid")
    assert rule.name == "query_duration_max_gte_5_by_fingerprint_pid=12_success=false"


def test_custom_series_rule_accepts_any_label() -> None:
    """A custom series name is a metric; its labels are the series' own, sorted for the query."""
    rule = make_rule("jobs_done", "gt", 10, "warning", aggregation="rate", by=("queue", "env"))
    assert rule.source == "points" and rule.key_names == ("env", "queue")
    assert rule.describe() == "rate(jobs_done)[60s] by queue,env gt 10/s"


def test_describe_shows_filters() -> None:
    """describe() is a one-line summary with the filters."""
    rule = make_rule("request_duration", "gt", 800, "warning", aggregation="p95", where={"method": "POST"},
                     window_seconds=300)
    assert rule.describe() == "p95(request_duration{method=POST})[300s] gt 800 ms"


@pytest.mark.parametrize(("changes", "field", "accepted"), [
    ({"op": "greater"}, "op", "gt, gte, lt, lte, eq"),
    ({"level": "fatal"}, "level", "info, warning, critical"),
    ({"aggregation": "p90"}, "aggregation", "p50, p95, p99, avg, max, min, count, rate"),
    ({"value": float("nan")}, "value", "finite number"),
    ({"value": True}, "value", "finite number"),
    ({"window_seconds": 0}, "window_seconds", "> 0"),
    ({"for_seconds": -1}, "for_seconds", ">= 0"),
    ({"keep_firing_seconds": float("inf")}, "keep_firing_seconds", ">= 0"),
    ({"repeat_interval_seconds": 0}, "repeat_interval_seconds", "> 0"),
    ({"by": ("fingerprint",)}, "by", "route, method, status, pid, host"),
    ({"by": ("route", "route")}, "by", "twice"),
    ({"where": {"colour": "red"}}, "where", "route, method, status, pid, host"),
    ({"message": 5}, "message", "not a string"),
    ({"metric": ""}, "metric", "request_duration, error_rate"),
])
def test_bad_fields_are_refused_with_the_accepted_values(changes: dict[str, object], field: str,
                                                         accepted: str) -> None:
    """Each bad field raises RuleError (a ConfigError) naming the field and what is accepted."""
    args: dict[str, object] = {"metric": "request_duration", "op": "gt", "value": 1, "level": "warning"}
    args.update(changes)
    with pytest.raises(ConfigError) as info:
        make_rule(**args)  # type: ignore[arg-type]
    assert isinstance(info.value, RuleError) and info.value.field == field
    assert field in str(info.value) and accepted in str(info.value)


@pytest.mark.parametrize("field", ["window_seconds", "for_seconds", "keep_firing_seconds", "repeat_interval_seconds"])
def test_durations_are_capped_at_a_year(field: str, tmp_path: Path) -> None:
    """window_seconds = 1e13 passed validation and then failed every sweep of every rule (issue 13, item 12):
    every duration of a rule is at most MAX_RULE_SECONDS (366 days), refused with the field and the cap, in
    Python and in a rules file (which names the line); the cap itself is accepted."""
    assert MAX_RULE_SECONDS == 366 * 86400
    args: dict[str, object] = {"metric": "request_duration", "op": "gt", "value": 1, "level": "warning"}
    assert getattr(make_rule(**args, **{field: MAX_RULE_SECONDS}), field) == MAX_RULE_SECONDS  # type: ignore[arg-type]
    for too_long in (MAX_RULE_SECONDS + 1, 1e13):
        with pytest.raises(RuleError) as info:
            make_rule(**args, **{field: too_long})  # type: ignore[arg-type]
        assert info.value.field == field and "31622400 (366 days)" in str(info.value)
    path = tmp_path / "rules.toml"
    path.write_text(f'[[rule]]\nmetric = "request_duration"\nop = "gt"\nvalue = 1\nlevel = "info"\n{field} = 1e13\n')
    with pytest.raises(RuleError, match=rf"rules.toml:6: .*field '{field}'.*366 days"):
        load_rules_file(path)


def test_metric_specific_aggregations() -> None:
    """error_rate and request_rate accept only the aggregations that mean something, and say why."""
    with pytest.raises(RuleError, match=r"avg, count, rate.*error fraction"):
        make_rule("error_rate", "gt", 0.05, "warning")
    with pytest.raises(RuleError, match="count, rate"):
        make_rule("request_rate", "lt", 1, "warning", aggregation="p95")
    assert make_rule("error_rate", "gt", 0.05, "warning", aggregation="avg").aggregation == "avg"


def test_bad_rule_values_directly() -> None:
    """Building a Rule directly is validated too: an empty name, a non-text where value, too many keys."""
    with pytest.raises(RuleError, match="non-empty"):
        Rule(name=" ", metric="request_duration", op="gt", value=1, level="info")
    with pytest.raises(RuleError, match="as text"):
        Rule(name="x", metric="request_duration", op="gt", value=1, level="info",
             where=(("status", 500),))  # type: ignore[arg-type]
    with pytest.raises(RuleError, match="at most 8"):
        make_rule("custom", "gt", 1, "info", by=[f"k{i}" for i in range(9)])
    with pytest.raises(RuleError, match="mapping"):
        make_rule("custom", "gt", 1, "info", where=[("a", "b")])  # type: ignore[arg-type]


def test_rule_accepts_a_where_mapping_and_a_by_string() -> None:
    """Rule(...) itself normalises a mapping `where` and a string `by`."""
    rule = Rule(name="x", metric="request_duration", op="gt", value=1, level="info",
                where={"method": "GET"}, by="route")  # type: ignore[arg-type]
    assert rule.where == (("method", "GET"),) and rule.by == ("route",)
    assert hash(rule) == hash(Rule(name="x", metric="request_duration", op="gt", value=1, level="info",
                                   where=(("method", "GET"),), by=("route",)))


def test_default_rules_are_the_plans_thresholds() -> None:
    """Request > 1 s warning, > 3 s critical; query > 100 ms / 1 s; memory RSS > 512 MB / 1 GB; and a route whose
    every request of the last 5 minutes failed, at least 5 of them."""
    got = {(r.metric, r.op, r.value, r.level, r.aggregation, r.min_count) for r in default_rules()}
    assert got == {
        ("request_duration", "gt", 1000, "warning", "max", 1), ("request_duration", "gt", 3000, "critical", "max", 1),
        ("query_duration", "gt", 100, "warning", "max", 1), ("query_duration", "gt", 1000, "critical", "max", 1),
        ("memory_rss", "gt", 512 * MB, "warning", "max", 1), ("memory_rss", "gt", 1024 * MB, "critical", "max", 1),
        ("error_rate", "gte", 1.0, "critical", "avg", 5),
    }
    assert len({r.name for r in default_rules()}) == 7
    [failing] = [r for r in default_rules() if r.metric == "error_rate"]
    assert failing.by == ("route",) and failing.window_seconds == 300


# -- TOML files --------------------------------------------------------------------------------------------
GOOD = """\
# comment
[[rule]]
name = "slow checkout"
metric = "request_duration"
aggregation = "p95"
window_seconds = 300
by = ["route"]
where = { method = "POST" }
op = "gt"
value = 800
level = "warning"
message = "checkout p95 over 800 ms"
for_seconds = 60

[[rule]]
metric = "error_rate"
aggregation = "avg"
op = "gt"
value = 0.05
level = "critical"

[rule.where]
status = 500
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return path


def test_rules_file_loads(tmp_path: Path) -> None:
    """A well-formed file gives its rules, in order, with every field."""
    rules = load_rules_file(write(tmp_path, GOOD))
    assert [r.name for r in rules] == ["slow checkout", "error_rate_avg_gt_0.05_status=500"]
    first = rules[0]
    assert (first.aggregation, first.window_seconds, first.by, first.where, first.for_seconds) == (
        "p95", 300, ("route",), (("method", "POST"),), 60)
    assert rules[1].where == (("status", "500"),)


def test_empty_rules_file(tmp_path: Path) -> None:
    """A file without rules is valid and empty."""
    assert load_rules_file(write(tmp_path, "# nothing yet\n")) == []


def expect_error(tmp_path: Path, text: str, line: int, *words: str) -> RuleError:
    path = write(tmp_path, text)
    with pytest.raises(RuleError) as info:
        load_rules_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}:"), message
    for word in words:
        assert word in message, message
    return info.value


def test_bad_field_names_file_line_and_field(tmp_path: Path) -> None:
    """A bad value is reported at the line of its field, in the right [[rule]] table."""
    text = GOOD.replace('op = "gt"\nvalue = 0.05', 'op = "above"\nvalue = 0.05')
    expect_error(tmp_path, text, 18, "rule #2", "field 'op'", "'above'", "gt, gte, lt, lte, eq")


def test_bad_field_in_first_rule(tmp_path: Path) -> None:
    """The first rule's bad level is reported at its own line, with the rule's name."""
    text = GOOD.replace('level = "warning"', 'level = "urgent"')
    expect_error(tmp_path, text, 11, "rule #1 ('slow checkout')", "field 'level'", "info, warning, critical")


def test_bad_value_in_a_where_subtable(tmp_path: Path) -> None:
    """A bad label in a [rule.where] table points at that table's header."""
    text = GOOD.replace("status = 500", "colour = 500")
    expect_error(tmp_path, text, 22, "rule #2", "field 'where'", "colour")


def test_missing_field_points_at_the_rule_header(tmp_path: Path) -> None:
    """A missing required field is reported at the line of its [[rule]] header."""
    text = GOOD.replace('level = "critical"\n', "")
    expect_error(tmp_path, text, 15, "rule #2", "missing field 'level'", "metric, op, value, level")


def test_unknown_field(tmp_path: Path) -> None:
    """An unknown field is refused at its line, with the list of fields."""
    text = GOOD.replace("for_seconds = 60", "for_secs = 60")
    expect_error(tmp_path, text, 13, "unknown field 'for_secs'", "keep_firing_seconds")


def test_wrong_types_in_file(tmp_path: Path) -> None:
    """`by` must be a list of names and `where` a table."""
    expect_error(tmp_path, GOOD.replace('by = ["route"]', "by = [1]"), 7, "field 'by'")
    expect_error(tmp_path, GOOD.replace('where = { method = "POST" }', 'where = "POST"'), 8, "field 'where'")
    expect_error(tmp_path, GOOD.replace("value = 800", 'value = "800"'), 10, "field 'value'")


def test_toml_syntax_error_has_its_line(tmp_path: Path) -> None:
    """Invalid TOML is refused with the parser's line."""
    expect_error(tmp_path, GOOD.replace("window_seconds = 300", "window_seconds = "), 6, "not valid TOML")


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    """Two rules with one name are refused at the second name's line."""
    text = GOOD + '\n[[rule]]\nname = "slow checkout"\nmetric = "memory_rss"\nop = "gt"\nvalue = 1\nlevel = "info"\n'
    expect_error(tmp_path, text, 26, "rule #3", "already used by rule #1")


def test_unknown_top_level_key(tmp_path: Path) -> None:
    """Anything but [[rule]] tables at the top is refused at its line."""
    expect_error(tmp_path, 'version = 2\n' + GOOD, 1, "unknown top-level key 'version'")
    expect_error(tmp_path, 'rule = "x"\n', 1, "array of tables")


def test_unreadable_file(tmp_path: Path) -> None:
    """A missing file is a RuleError naming the path."""
    with pytest.raises(RuleError, match="cannot read the rules file"):
        load_rules_file(tmp_path / "missing.toml")


def test_inline_rule_array_still_reports_a_line() -> None:
    """Rules written as an inline array get the line of the offending field when it can be found."""
    text = 'rule = [\n  { metric = "request_duration", op = "gt", value = 1, level = "bad" },\n]\n'
    with pytest.raises(RuleError, match=r"^r.toml:1: rule #1, field 'level'"):
        parse_rules(text, "r.toml")
