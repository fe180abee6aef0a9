"""Named SQL blocks are loaded from the package, and a malformed file says where it is wrong."""

from __future__ import annotations

import pytest

from pipeline import sqlfiles
from pipeline.errors import SqlFileError


def test_blocks_are_split_by_name_without_comments() -> None:
    """Each `-- name:` starts a block; comment lines are left out of the SQL."""
    text = "-- header\n-- name: a-one\n-- what it does\nSELECT 1;\n\n-- name: b\n-- doc\nSELECT\n  2;\n"
    assert sqlfiles.parse(text, "x.sql") == {"a-one": "SELECT 1;", "b": "SELECT\n  2;"}


@pytest.mark.parametrize(("text", "where"), [
    ("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n", "x.sql:3: block 'a' is defined twice"),
    ("-- name: a\n-- only a comment\n", "x.sql:1: block 'a' has no SQL"),
    ("-- name: Bad Name\nSELECT 1;\n", "x.sql:1: malformed name line"),
])
def test_malformed_files_name_file_and_line(text: str, where: str) -> None:
    """Errors name file:line and what to fix."""
    with pytest.raises(SqlFileError, match=where):
        sqlfiles.parse(text, "x.sql")


def test_unknown_block_lists_the_known_ones() -> None:
    """Asking for a block that does not exist names the ones that do."""
    with pytest.raises(SqlFileError, match="route-percentiles"):
        sqlfiles.query("queries.sql", "no-such-block")
    assert "schema.sql" in sqlfiles.names()
