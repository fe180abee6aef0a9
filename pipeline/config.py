"""Where settings come from: keyword arguments > ``DUCKPULSE_*`` variables > duckpulse.toml > the defaults.

``load()`` merges them once into a ``settings.Settings``, field by field, and validates every value where it came
from, so a bad one raises ``ConfigError`` naming its source: the keyword, the variable, or ``file:line``,
``[section] field``. The configuration file is ``Monitor(config=...)`` / ``--config``, else ``$DUCKPULSE_CONFIG``,
else ``duckpulse.toml`` beside the database when there is one; its sections are the settings dataclasses, plus the
``[[rule]]`` array (read by pipeline/alerts/rules.py, which names file:line too) and ``[[notifier]]``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import tomldoc
from .alerts.rules import Rule, RuleError, field_line, rules_from_document
from .errors import ConfigError
from .objectstore import is_object_url
from .settings import (
    AlertSettings,
    ArchiveSettings,
    NotifierSettings,
    ObjectStoreSettings,
    OutboxSettings,
    OwnerSettings,
    PublishSettings,
    RecordingSettings,
    RetentionSettings,
    RollupSettings,
    Settings,
    StorageSettings,
)

CONFIG_FILE_NAME = "duckpulse.toml"
CONFIG_VARIABLE = "DUCKPULSE_CONFIG"


# -- where each field may come from ------------------------------------------------------------------------------
# The file's sections hold these dataclasses' fields ([alerts] only its plain fields: rules and notifiers are the
# [[rule]] and [[notifier]] arrays).
SECTIONS: dict[str, type[Any]] = {
    "recording": RecordingSettings, "storage": StorageSettings, "alerts": AlertSettings,
    "rollup": RollupSettings, "retention": RetentionSettings, "archive": ArchiveSettings,
    "object_store": ObjectStoreSettings, "outbox": OutboxSettings,
    "publish": PublishSettings,
}
_NOT_IN_FILE = {("alerts", "rules"), ("alerts", "notifiers"), ("recording", "host")}
_PATHS = {"spool_dir", "history_dir", "outbox_dir"}
_TEXTS = {"duckdb_memory_limit", "host", "spool_url", "endpoint_url", "region", "profile"}
_OPTIONAL = {"memory_interval_seconds", "host", "duckdb_memory_limit", "spool_dir", "history_dir", "history_days",
             "spool_url", "endpoint_url", "region", "profile", "outbox_dir"}
# Monitor's keyword arguments that name a field differently from the file.
KEYWORDS: dict[str, tuple[str, str]] = {
    "ingest_dir": ("storage", "spool_dir"),
    "spool_url": ("storage", "spool_url"),
    "alert_interval_seconds": ("alerts", "interval_seconds"),
    **{name: ("recording", name) for name in (f.name for f in dataclasses.fields(RecordingSettings))},
    **{name: ("storage", name) for name in ("duckdb_memory_limit", "jobs")},
    "default_rules": ("alerts", "default_rules"),
}
# Keyword arguments that give a whole section (a RollupSettings, ...): they replace the file's and variables'.
SECTION_KEYWORDS = ("rollup", "retention", "archive", "publish", "object_store", "outbox")


def _environment() -> dict[str, tuple[str, str]]:
    """DUCKPULSE_* variable -> (section, field). Recording and storage fields keep their name; the jobs' fields
    take their section's (DUCKPULSE_RETENTION_RAW_DAYS); the dashboard's variables (DUCKPULSE_HOST, _PORT,
    _TOKEN, ...) are webapp/config.py's, which is why the row's host name has none."""
    names: dict[str, tuple[str, str]] = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if (section, f.name) in _NOT_IN_FILE:
                continue
            prefix = "" if section in ("recording", "storage") else f"{section}_"
            names[f"DUCKPULSE_{prefix}{f.name}".upper()] = (section, f.name)
    names["DUCKPULSE_HISTORY_DIR"] = names.pop("DUCKPULSE_ARCHIVE_HISTORY_DIR")  # as `duckpulse sql` reads it
    return names


ENVIRONMENT = _environment()


def _kind(section: str, name: str) -> str:
    if name in _PATHS:
        return "path"
    if name in _TEXTS:
        return "text"
    default = getattr(SECTIONS[section](), name)
    if isinstance(default, bool):
        return "boolean"
    return "integer" if isinstance(default, int) else "number"


_TRUE, _FALSE = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off"})


def _from_text(section: str, name: str, text: str) -> Any:
    """A variable's text as the field's type; raises ValueError saying what was expected."""
    kind = _kind(section, name)
    if name in _OPTIONAL and text.strip().lower() in ("", "none", "off"):
        return None
    if kind == "boolean":
        if text.strip().lower() not in _TRUE | _FALSE:
            raise ValueError("expected true or false (1/0, yes/no, on/off)")
        return text.strip().lower() in _TRUE
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
    except ValueError:
        raise ValueError(f"expected {'an integer' if kind == 'integer' else 'a number'}") from None
    return _path(text) if kind == "path" else text


def _path(value: str | os.PathLike[str], base: Path | None = None) -> str | Path:
    """A path setting: an object storage URL stays as it is (history_dir = "s3://..."), a path becomes a Path."""
    if is_object_url(value):
        return str(value)
    return base / value if base is not None else Path(value)


def _from_toml(section: str, name: str, value: Any, base: Path) -> Any:
    """A file's value as the field's type (paths relative to the file's folder); ValueError if mistyped."""
    kind = _kind(section, name)
    if name in _OPTIONAL and value is False:  # TOML has no null: `false` switches an optional setting off
        return None
    ok = {"boolean": isinstance(value, bool), "integer": isinstance(value, int) and not isinstance(value, bool),
          "number": isinstance(value, int | float) and not isinstance(value, bool),
          "text": isinstance(value, str), "path": isinstance(value, str)}[kind]
    if not ok:
        off = " (or false: off)" if name in _OPTIONAL else ""
        raise ValueError(f"expected {'a' if kind != 'integer' else 'an'} {kind}{off}, got {value!r}")
    if kind == "number":
        return float(value)
    return _path(value, base) if kind == "path" else value


def _expected(exc: ConfigError) -> str:
    """The "expected ..." part of a dataclass's "name=value: expected ..." message."""
    text = str(exc)
    return text.split(": ", 1)[1] if re.match(r"^\w+=", text) and ": " in text else text


@dataclass
class _Value:
    value: Any
    # Where it came from, for messages: "keyword=1" (an argument), "DUCKPULSE_X='1'" or "file:line: [s] field = 1".
    source: str


# -- the configuration file --------------------------------------------------------------------------------------
_HEADER = re.compile(r"^\s*\[")


def _section_line(lines: list[str], section: str, key: str | None) -> int:
    """The 1-based line of ``key`` in ``[section]`` (its header if the key is not found; 1 without either)."""
    header = re.compile(rf"^\s*\[\s*{re.escape(section)}\s*\]")
    start = next((n for n, line in enumerate(lines) if header.match(line)), None)
    if start is None:
        return 1
    if key is not None:
        pattern = re.compile(rf"""^\s*(?:{re.escape(key)}|"{re.escape(key)}")\s*=""")
        for n in range(start + 1, len(lines)):
            if _HEADER.match(lines[n]):
                break
            if pattern.match(lines[n]):
                return n + 1
    return start + 1


def _top_line(lines: list[str], key: str) -> int:
    pattern = re.compile(rf"""^\s*(?:\[\[?\s*{re.escape(key)}\s*\]|{re.escape(key)}\s*=)""")
    return next((n + 1 for n, line in enumerate(lines) if pattern.match(line)), 1)


@dataclass
class ConfigFile:
    """What a configuration file holds: field values by section (each with its source), rules and notifiers."""

    path: Path
    values: dict[str, dict[str, _Value]] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    notifiers: tuple[NotifierSettings, ...] = ()


def read_config_file(path: str | os.PathLike[str]) -> ConfigFile:
    """Parse and check a configuration file; any error raises ConfigError naming ``file:line`` and the field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc}") from exc
    lines = text.splitlines()
    try:
        data = tomldoc.loads(text)
    except tomldoc.TomlError as exc:
        raise ConfigError(f"{path}:{exc.line}: not valid TOML: {exc}") from None
    result = ConfigFile(path)
    base = path.parent
    for key, content in data.items():
        line = _top_line(lines, key)
        if key == "rule":
            try:
                result.rules = tuple(rules_from_document(content, lines, str(path)))
            except RuleError as exc:
                raise ConfigError(str(exc)) from None
        elif key == "notifier":
            result.notifiers = _notifiers(content, lines, path)
        elif key in SECTIONS and isinstance(content, dict):
            result.values[key] = _section_values(key, content, lines, path, base)
        else:
            raise ConfigError(f"{path}:{line}: unknown {'section' if isinstance(content, dict) else 'key'} "
                              f"{key!r}; the file holds the sections {', '.join(f'[{s}]' for s in SECTIONS)} and "
                              "the arrays [[rule]] and [[notifier]]")
    return result


def _section_values(section: str, content: dict[str, Any], lines: list[str], path: Path,
                    base: Path) -> dict[str, _Value]:
    cls = SECTIONS[section]
    known = [f.name for f in dataclasses.fields(cls) if (section, f.name) not in _NOT_IN_FILE]
    values: dict[str, _Value] = {}
    for name, raw in content.items():
        line = _section_line(lines, section, name)
        where = f"{path}:{line}: [{section}] {name}"
        if name not in known:
            raise ConfigError(f"{where}: unknown field; [{section}] has {', '.join(known)}")
        try:
            value = _from_toml(section, name, raw, base)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        values[name] = _Value(value, f"{where} = {raw!r}")
    return values


def _notifiers(content: Any, lines: list[str], path: Path) -> tuple[NotifierSettings, ...]:
    if not isinstance(content, list):
        raise ConfigError(f"{path}:{_top_line(lines, 'notifier')}: 'notifier' must be an array of tables: write "
                          "each notifier under its own [[notifier]] header")
    known = [f.name for f in dataclasses.fields(NotifierSettings)]
    notifiers: list[NotifierSettings] = []
    for index, table in enumerate(content):
        def fail(name: str | None, message: str, index: int = index) -> ConfigError:
            line = field_line(lines, index, name, array="notifier")
            return ConfigError(f"{path}:{line}: notifier #{index + 1}{f', field {name!r}' if name else ''}: "
                               f"{message}")

        unknown = [k for k in table if k not in known]
        if unknown:
            raise fail(unknown[0], f"unknown field; the fields are {', '.join(known)}")
        if "type" not in table:
            raise fail(None, "missing field 'type' (\"log\" or \"webhook\")")
        for name, value in table.items():
            alone = ({"type": value, "url": "http://localhost"} if name == "type" else
                     {"type": "webhook", "url": value} if name == "url" else {"type": "log", name: value})
            if name == "url" and table["type"] != "webhook":
                continue
            try:
                NotifierSettings(**alone)
            except ConfigError as exc:
                raise fail(name, _expected(exc)) from None
            except TypeError as exc:
                raise fail(name, str(exc)) from None
        try:
            notifiers.append(NotifierSettings(**table))
        except ConfigError as exc:
            bad = re.match(r"^(\w+)=", str(exc))
            raise fail(bad[1] if bad else None, _expected(exc)) from None
    return tuple(notifiers)


def find_config_file(config: str | os.PathLike[str] | None, db_path: str | os.PathLike[str] | None,
                     environ: Mapping[str, str]) -> Path | None:
    """The configuration file to read: ``config``, else ``$DUCKPULSE_CONFIG``, else ``duckpulse.toml`` beside the
    database when there is one. A file named explicitly must exist."""
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"config={os.fspath(config)!r}: no such file; give the path of a duckpulse.toml")
        return path
    named = environ.get(CONFIG_VARIABLE)
    if named:
        if not Path(named).is_file():
            raise ConfigError(f"{CONFIG_VARIABLE}={named!r}: no such file; point it at a duckpulse.toml, or unset it")
        return Path(named)
    if db_path is not None and os.fspath(db_path) != ":memory:":
        beside = Path(db_path).parent / CONFIG_FILE_NAME
        if beside.is_file():
            return beside
    return None


# -- merging ---------------------------------------------------------------------------------------------------
def load(options: Mapping[str, Any] | None = None, *, db_path: str | os.PathLike[str] | None = None,
         config: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings of a monitor: ``options`` (keyword arguments) > ``DUCKPULSE_*`` variables > the file > defaults.

    ``options`` holds only what the caller gave (Monitor's keyword arguments; absent means "not given").
    """
    options = dict(options or {})
    environ = os.environ if environ is None else environ
    file = find_config_file(config, db_path, environ)
    parsed = read_config_file(file) if file is not None else None
    merged: dict[str, dict[str, _Value]] = {s: dict(parsed.values.get(s, {})) if parsed else {} for s in SECTIONS}
    for variable, (section, name) in ENVIRONMENT.items():
        text = environ.get(variable)
        if text is None:
            continue
        try:
            merged[section][name] = _Value(_from_text(section, name, text), f"{variable}={text!r}")
        except ValueError as exc:
            raise ConfigError(f"{variable}={text!r}: {exc}") from None
    role = environ.get("DUCKPULSE_ROLE", "auto")
    for key, value in options.items():
        if key == "role":
            role = value
        elif key in KEYWORDS:
            section, name = KEYWORDS[key]
            if name in _PATHS and isinstance(value, str | os.PathLike):
                value = _path(value)
            merged[section][name] = _Value(value, f"{key}={value!r}")
        elif key not in SECTION_KEYWORDS:
            raise ConfigError(f"unknown setting {key!r}; the settings are {', '.join(sorted(KEYWORDS))}, "
                              f"{', '.join(SECTION_KEYWORDS)} and role")
    sections = {section: _build(SECTIONS[section], merged[section]) for section in SECTIONS}
    for key in SECTION_KEYWORDS:
        if options.get(key) is not None:
            if not isinstance(options[key], SECTIONS[key]):
                raise ConfigError(f"{key}={options[key]!r}: expected a {SECTIONS[key].__name__}")
            sections[key] = options[key]
    if parsed is not None:
        sections["alerts"] = dataclasses.replace(sections["alerts"], rules=parsed.rules, notifiers=parsed.notifiers)
    owner = OwnerSettings(storage=sections["storage"], alerts=sections["alerts"], rollup=sections["rollup"],
                          retention=sections["retention"], archive=sections["archive"],
                          publish=sections["publish"])
    return Settings(role=role, recording=sections["recording"], owner=owner, object_store=sections["object_store"],
                    outbox=sections["outbox"], config_file=file)


def _build(cls: type[Any], values: Mapping[str, _Value]) -> Any:
    """The section from its values; a bad one raises ConfigError naming its source."""
    for name, item in values.items():
        try:
            cls(**{name: item.value})
        except ConfigError as exc:
            raise ConfigError(f"{item.source}: {_expected(exc)}") from None
    return cls(**{name: item.value for name, item in values.items()})


def options_from_config(config: Mapping[str, Any], prefix: str = "DUCKPULSE_") -> dict[str, Any]:
    """Monitor's keyword arguments from the ``DUCKPULSE_*`` keys of a mapping (a Flask ``app.config``): each key
    is a keyword in capitals (DUCKPULSE_FLUSH_INTERVAL_SECONDS), plus DUCKPULSE_ROLE and DUCKPULSE_CONFIG. Text
    values are read like the environment's; other keys (the dashboard's, the middleware's) are left alone."""
    options: dict[str, Any] = {}
    for key, value in config.items():
        if not isinstance(key, str) or not key.startswith(prefix):
            continue
        name = key.removeprefix(prefix).lower()
        if name in ("role", "config"):
            options[name] = value
        elif name in KEYWORDS and name != "host":
            section, field_name = KEYWORDS[name]
            if isinstance(value, str):
                try:
                    value = _from_text(section, field_name, value)
                except ValueError as exc:
                    raise ConfigError(f"{key}={value!r}: {exc}") from None
            options[name] = value
    return options


def differences(current: Settings, options: Mapping[str, Any]) -> list[str]:
    """The keyword settings in ``options`` whose values differ from ``current`` (a monitor created again)."""
    sections = {"recording": current.recording, "storage": current.owner.storage, "alerts": current.owner.alerts}
    found: list[str] = []
    for key, value in options.items():
        if key == "role":
            have: Any = current.role
        elif key == "config":
            if value is None:  # found the same way again
                continue
            have, value = current.config_file, Path(value)
        elif key in SECTION_KEYWORDS:
            have = getattr(current if key in ("object_store", "outbox") else current.owner, key)
        elif key in KEYWORDS:
            section, name = KEYWORDS[key]
            have = getattr(sections[section], name)
            value = _path(value) if name in _PATHS and isinstance(value, str | os.PathLike) else value
        else:
            continue
        if (value != have and value is not None) or (value is None and have is not None and key in KEYWORDS):
            found.append(f"{key}={value!r} (open: {have!r})")
    return found


def describe(settings: Settings) -> list[str]:
    """What a configuration amounts to, one line per part (``duckpulse config check``)."""
    owner = settings.owner
    alerts = owner.alerts
    notifiers = ", ".join(n.type + (f" {n.url}" if n.url else f" ({n.logger})") for n in alerts.notifiers)
    return [
        f"recording: flush every {settings.recording.flush_interval_seconds:g} s, at most "
        f"{settings.recording.max_buffered:,} metrics buffered, sample rate {settings.recording.sample_rate:g}",
        f"storage: DuckDB memory limit {owner.storage.duckdb_memory_limit or 'DuckDB default (80% of RAM)'}, "
        f"spool {owner.storage.spool_dir or '<db>.spool'}",
        f"alerts: {len(alerts.rules)} rule(s) from the file"
        f"{' plus the default rules' if alerts.default_rules else ' (default rules off)'}, swept every "
        f"{alerts.interval_seconds:g} s; notifiers: {'log' if alerts.log else 'no log'}"
        f"{', ' + notifiers if notifiers else ''}",
        *(f"  rule {r.name}: {r.describe()} ({r.level})" for r in alerts.rules),
        f"retention: raw {owner.retention.raw_days:g} d, 1-minute rollups {owner.retention.rollups_1m_days:g} d, "
        f"1-hour rollups {owner.retention.rollups_1h_days:g} d",
        f"archive: {owner.archive.history_dir or '<db>.history'}, kept "
        f"{'forever' if owner.archive.history_days is None else f'{owner.archive.history_days:g} d'}",
        f"publish: the rows not archived yet, every {owner.publish.interval_seconds:g} s, for readers in other "
        "processes",
        *_describe_fleet(settings),
    ]


def _describe_fleet(settings: Settings) -> list[str]:
    """The object storage lines of ``describe`` (none when nothing is in object storage)."""
    spool_url, history = settings.owner.storage.spool_url, settings.owner.archive.history_dir
    if spool_url is None and not is_object_url(history):
        return []
    store, outbox = settings.object_store, settings.outbox
    region = f", region {store.region}" if store.region else ""
    profile = f", profile {store.profile}" if store.profile else ""
    return [f"fleet: spool {spool_url or 'local'}, history {history if is_object_url(history) else 'local'}; "
            f"object store {store.endpoint_url or 'AWS S3 (or AWS_ENDPOINT_URL)'}{region}{profile}; credentials "
            "from the AWS environment and files",
            f"outbox: {outbox.outbox_dir or '<cache>/duckpulse/outbox/<bucket>/<prefix>'}, at most "
            f"{outbox.max_bytes:,} bytes, retries from {outbox.retry_initial_seconds:g} s to "
            f"{outbox.retry_max_seconds:g} s"]
