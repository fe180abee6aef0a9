"""The fingerprint corpus: statements by dialect and category, each with the fingerprint it must give.

The literal spellings, comments and quoting rules of each dialect are the ones its documentation defines
(see pipeline/fingerprint/dialects.py for the sources); ``None`` is the safe reading with no dialect known.
Every literal and comment carries the marker ``Zq9`` where it can hold text, so a leak is easy to see.
Generated rows plant each literal in each template; the expected fingerprint is the template's, written here by
hand once. Hand-written rows pin the cases a template cannot express.
"""

from __future__ import annotations

MARKER = "Zq9"

# (template with {} where a literal goes, the fingerprint every literal must give)
TEMPLATES: list[tuple[str, str]] = [
    ("SELECT * FROM t WHERE a = {}", "SELECT * FROM t WHERE a = ?"),
    ("SELECT id FROM t WHERE a IN ({}, {}, {}) AND b = 1", "SELECT id FROM t WHERE a IN (?+) AND b = ?"),
    ("INSERT INTO t (a, b) VALUES ({}, {}), ({}, 2)", "INSERT INTO t(a, b) VALUES (?+)"),
    ("UPDATE t SET a = {} WHERE id = 5", "UPDATE t SET a = ? WHERE id = ?"),
    ("SELECT {} AS x, y FROM t ORDER BY y LIMIT 10", "SELECT ? AS x, y FROM t ORDER BY y LIMIT ?"),
]
COMMENT_TEMPLATES: list[tuple[str, str]] = [
    ("SELECT a FROM t {}\nWHERE b = 1", "SELECT a FROM t WHERE b = ?"),
    ("{}\nSELECT 1", "SELECT ?"),
    ("UPDATE t SET a = 1 {}\n", "UPDATE t SET a = ?"),
]

_NUMBERS = ["42", "-42", "3.14", ".5", "6.02e23", "1.5E-3"]
LITERALS: dict[str | None, list[str]] = {
    "postgres": [
        "'Zq9 it''s'", "E'Zq9\\'s\\n'", "e'Zq9\\\\'", "U&'Zq9\\0041'", "N'Zq9'", "B'1010'", "X'1F'",
        "$$Zq9 it's$$", "$tag$Zq9 $$ 'x'$tag$", "'C:\\'", "'{1,2,Zq9}'", "0x1F", "0o17", "0b1010", "1_000_000",
        "TRUE", "false", *_NUMBERS],
    "duckdb": [
        "'Zq9 it''s'", "E'Zq9\\'s'", "$$Zq9 it's$$", "$t$Zq9$t$", "X'AB'", "B'0101'", "'C:\\'", "0x1F",
        "0b101", "1_000", "TRUE", *_NUMBERS],
    "mysql": [
        "'Zq9'", "'it\\'s Zq9'", "'it''s Zq9'", "\"Zq9 \\\"q\\\"\"", "\"it\"\"s Zq9\"", "'C:\\\\'", "N'Zq9'",
        "X'1F'", "x'1f'", "0x1F", "B'101'", "b'101'", "0b101", "TRUE", "'Zq9\\\\' ", *_NUMBERS],
    "sqlite": [
        "'Zq9'", "'it''s Zq9'", "'C:\\'", "X'AB'", "x'ab'", "0x1F", "\"Zq9\"", "TRUE", "FALSE", *_NUMBERS],
    "oracle": [
        "'Zq9'", "'it''s Zq9'", "q'[Zq9 it's]'", "Q'{Zq9 it's}'", "q'(Zq9)'", "q'<Zq9>'", "q'!it's Zq9!'",
        "nq'[Zq9]'", "N'Zq9'", "'C:\\'", "'%Zq9\\_%'", "25f", "2.5D", *_NUMBERS],
    "mssql": [
        "'Zq9'", "'it''s Zq9'", "N'Zq9'", "'C:\\'", "0x1F", "$12.50", "\"Zq9\"", *_NUMBERS],
    None: [
        "'Zq9'", "'it''s Zq9'", "\"Zq9\"", "N'Zq9'", "X'1F'", "B'1'", "E'Zq9\\n'", "$$Zq9 it's$$", "$t$Zq9$t$",
        "q'[Zq9 it's]'", "0x1F", "0b1", "$5", "$12.50", "TRUE", *_NUMBERS],
}
COMMENTS: dict[str | None, list[str]] = {
    "postgres": ["-- Zq9 'x", "/* Zq9 */", "/* a /* Zq9 */ b */", "/**/"],
    "duckdb": ["-- Zq9", "/* a /* Zq9 */ b */"],
    "mysql": ["# Zq9 'x", "-- Zq9", "/* Zq9 */", "/*! Zq9 */", "/*+ Zq9 */"],
    "sqlite": ["-- Zq9", "/* Zq9 */"],
    "oracle": ["-- Zq9", "/*+ INDEX(t Zq9) */"],
    "mssql": ["-- Zq9", "/* a /* Zq9 */ b */"],
    None: ["# Zq9", "-- Zq9", "/* a /* Zq9 */ b */"],
}

# Hand-written rows: (dialect, category, statement, fingerprint).
CASES: list[tuple[str | None, str, str, str]] = [
    # The leaks the issue reported, each read in its own dialect and with none.
    ("mysql", "leak", "SELECT * FROM t WHERE id = 5 # password=hunter2", "SELECT * FROM t WHERE id = ?"),
    (None, "leak", "SELECT * FROM t WHERE id = 5 # password=hunter2", "SELECT * FROM t WHERE id = ?"),
    ("postgres", "leak", "SELECT * FROM f WHERE path = 'C:\\' AND secret = 'hunter2'",
     "SELECT * FROM f WHERE path = ? AND secret = ?"),
    (None, "leak", "SELECT * FROM f WHERE path = 'C:\\' AND secret = 'hunter2'", "SELECT * FROM f WHERE path = ?"),
    ("oracle", "leak", "SELECT * FROM t WHERE a LIKE '%foo\\_%' ESCAPE '\\' AND col LIKE '%bar\\_%'",
     "SELECT * FROM t WHERE a LIKE ? ESCAPE ? AND col LIKE ?"),
    ("postgres", "leak", "SELECT 1 /* outer /* inner */ hunter2 */ FROM t", "SELECT ? FROM t"),
    ("oracle", "leak", "SELECT * FROM t WHERE note = q'[it's secret]'", "SELECT * FROM t WHERE note = ?"),
    (None, "leak", "SELECT * FROM t WHERE note = q'[it's secret]'", "SELECT * FROM t WHERE note = ?"),
    ("mysql", "leak", "SELECT * FROM t WHERE flags = 0b1010", "SELECT * FROM t WHERE flags = ?"),
    ("mysql", "leak", 'SELECT * FROM users WHERE email = "bob@example.com"', "SELECT * FROM users WHERE email = ?"),
    (None, "leak", 'SELECT * FROM users WHERE email = "bob@example.com"', "SELECT * FROM users WHERE email = ?"),
    # Identifiers each dialect quotes its own way stay as written.
    ("postgres", "identifier", 'SELECT "Mixed Case", "a""b" FROM "my schema"."T"',
     'SELECT "Mixed Case", "a""b" FROM "my schema"."T"'),
    ("postgres", "identifier", 'SELECT U&"d\\0061t" FROM t', 'SELECT U&"d\\0061t" FROM t'),
    ("mysql", "identifier", "SELECT `order`, `a``b` FROM `my db`.`t` WHERE 1abc = 2",
     "SELECT `order`, `a``b` FROM `my db`.`t` WHERE 1abc = ?"),
    ("sqlite", "identifier", "SELECT [order], `group` FROM [my table] WHERE [x] = 1",
     "SELECT [order], `group` FROM [my table] WHERE [x] = ?"),
    ("sqlite", "identifier", 'SELECT "t"."name" FROM "t" WHERE "t"."id" = ?',
     'SELECT "t"."name" FROM "t" WHERE "t"."id" = ?'),
    ("sqlite", "identifier", 'INSERT INTO "t" ("a", "b") VALUES (?, ?)', 'INSERT INTO "t"("a", "b") VALUES (?+)'),
    ("sqlite", "identifier", 'UPDATE "t" SET "a" = 1, "b" = 2 WHERE "t"."id" = 3',
     'UPDATE "t" SET "a" = ?, "b" = ? WHERE "t"."id" = ?'),
    ("sqlite", "identifier", 'CREATE TABLE "t" ("id" integer NOT NULL, "name" text)',
     'CREATE TABLE "t"("id" integer NOT NULL, "name" text)'),
    ("mssql", "identifier", "SELECT [Order Details].[Unit Price] FROM #tmp JOIN ##glob ON 1 = 1",
     "SELECT [Order Details].[Unit Price] FROM #tmp JOIN ##glob ON ? = ?"),
    ("oracle", "identifier", 'SELECT "Name", col$1, col#2 FROM hr.emp WHERE id = :id AND x = :1',
     'SELECT "Name", col$1, col#2 FROM hr.emp WHERE id = :id AND x = :1'),
    # Placeholders are kept as written.
    ("postgres", "placeholder", "SELECT * FROM t WHERE a = $1 AND b = %s AND c = %(name)s",
     "SELECT * FROM t WHERE a = $1 AND b = %s AND c = %(name)s"),
    ("duckdb", "placeholder", "SELECT * FROM t WHERE a = $1 AND b = $name AND c = ?",
     "SELECT * FROM t WHERE a = $1 AND b = $name AND c = ?"),
    ("sqlite", "placeholder", "SELECT * FROM t WHERE a = ?1 AND b = :b AND c = @c AND d = $d",
     "SELECT * FROM t WHERE a = ?1 AND b = :b AND c = @c AND d = $d"),
    ("mysql", "placeholder", "SELECT * FROM t WHERE a = %s AND b = @var AND c = @@session.x",
     "SELECT * FROM t WHERE a = %s AND b = @var AND c = @@session.x"),
    (None, "placeholder", "SELECT * FROM t WHERE a = $1 AND b = %s AND c = :c",
     "SELECT * FROM t WHERE a = ? AND b = %s AND c = :c"),
    # Operators that look like comments or quotes in another dialect.
    ("postgres", "operator", "SELECT doc #> '{a,Zq9}', doc #>> '{b}', 5 # 3, doc ?| array['x'] FROM t",
     "SELECT doc #> ?, doc #>> ?, ? # ?, doc ?| ARRAY[?+] FROM t"),
    ("mysql", "operator", "SELECT a <=> b, c--1, d := 5 FROM t", "SELECT a <=> b, c - ?, d := ? FROM t"),
    ("postgres", "operator", "SELECT '5'::int, x::numeric(10, 2), CAST(y AS varchar) FROM t",
     "SELECT ?::INT, x::NUMERIC(?, ?), CAST(y AS VARCHAR) FROM t"),
    ("duckdb", "operator", "SELECT [1, 2, 3] AS l, {'k': 'Zq9'} AS s, l[1] FROM t",
     "SELECT [?+] AS l, { ? : ? } AS s, l[?] FROM t"),
    # Typed literals: the type name stays, upper-cased; its value does not.
    ("postgres", "typed", "SELECT date '2024-01-01', interval '1 day', int4 '5'", "SELECT DATE ?, INTERVAL ?, INT4 ?"),
    ("oracle", "typed", "SELECT * FROM t WHERE d > DATE '2024-01-01' AND ts < TIMESTAMP '2024-01-01 10:00:00'",
     "SELECT * FROM t WHERE d > DATE ? AND ts < TIMESTAMP ?"),
    ("mysql", "typed", "SELECT _utf8mb4'Zq9' COLLATE utf8mb4_bin, {d '2024-01-01'}",
     "SELECT _UTF8MB4 ? COLLATE utf8mb4_bin, { D ? }"),
    # Malformed input: whatever is unterminated swallows the rest.
    ("postgres", "malformed", "SELECT * FROM t WHERE a = 'Zq9 never closed AND b = 2", "SELECT * FROM t WHERE a = ?"),
    ("postgres", "malformed", "SELECT * FROM t WHERE a = $$Zq9 never closed", "SELECT * FROM t WHERE a = ?"),
    ("mysql", "malformed", "SELECT * FROM t WHERE a = \"Zq9 \\\" never closed", "SELECT * FROM t WHERE a = ?"),
    ("duckdb", "malformed", "SELECT * FROM t WHERE a = 'Zq9 '' never closed", "SELECT * FROM t WHERE a = ?"),
    ("duckdb", "malformed", "SELECT 1 /* a /* Zq9 */ never closed", "SELECT ?"),
    ("oracle", "malformed", "SELECT * FROM t WHERE a = q'[Zq9 never closed", "SELECT * FROM t WHERE a = ?"),
    ("sqlite", "malformed", "SELECT * FROM t /* Zq9 never closed", "SELECT * FROM t"),
    ("mssql", "malformed", "SELECT [Zq9 never closed FROM t", "SELECT ?"),
    (None, "malformed", "SELECT * FROM t WHERE a = 'it\\'s' AND b = 'Zq9'", "SELECT * FROM t WHERE a = ?"),
    (None, "malformed", "SELECT 1 /* a /* b /* c /* d /* e /* f */ */ */ */ */ */ Zq9", "SELECT ?"),
]


def corpus() -> list[tuple[str | None, str, str, str]]:
    """Every row: (dialect, category, statement, expected fingerprint)."""
    rows: list[tuple[str | None, str, str, str]] = []
    for dialect, literals in LITERALS.items():
        for literal in literals:
            for template, expected in TEMPLATES:
                rows.append((dialect, "literal", template.format(*[literal] * template.count("{}")), expected))
    for dialect, comments in COMMENTS.items():
        for comment in comments:
            for template, expected in COMMENT_TEMPLATES:
                rows.append((dialect, "comment", template.format(comment), expected))
    rows.extend(CASES)
    return rows
