"""The config file: where `deploy.yaml` is, reading it, its YAML, and the one-line error.

The schema is stagecoach.config; this module turns a file (or parsed data) into a `Config`, or
into one `ConfigError` that names the file and the key path and says what to fix.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from stagecoach.config import Config, ConfigError

DEFAULT_CONFIG = "deploy.yaml"
MAX_CONFIG_BYTES = 256 * 1024  # a deploy.yaml is a few KB
MAX_YAML_ALIASES = 20  # anchors may be reused, but not to build a bomb out of merge keys


def _describe(err: ValidationError, source: str) -> str:
    e = err.errors()[0]
    path = ".".join(str(p) for p in e["loc"]) or "(top level)"
    m = re.match(r"^Value error, ((?:environments|services)\.[^\s:]+): (.*)$", e["msg"], re.S)
    if m:  # a validator that names the exact key path itself
        return f"{source}: {m.group(1)}: {m.group(2)}" + (
            f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
        )
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{source}: {path}: {e['msg']}{more}"


def config_path(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get("STAGECOACH_CONFIG") or DEFAULT_CONFIG)


def parse_config(data: Any, source: str = "config") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, source) + "; fix that key and run again") from None


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate the config file (explicit path, STAGECOACH_CONFIG, or ./deploy.yaml).

    GCPSIM_PORT / GCPSIM_GRPC_PORT override the `gcpsim` endpoint ports."""
    p = config_path(str(path) if path else None)
    if not p.is_file():
        raise ConfigError(f"config file {p} not found; pass --config FILE or set STAGECOACH_CONFIG")
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"{p}: cannot read it ({err.strerror})") from None
    data = parse_yaml(raw, str(p))
    if isinstance(data, dict):
        sim = dict(data.get("gcpsim") or {})
        for key, var in (("port", "GCPSIM_PORT"), ("grpc_port", "GCPSIM_GRPC_PORT")):
            if os.environ.get(var):
                sim[key] = env_port(var)
        if sim:
            data["gcpsim"] = sim
    return parse_config(data, str(p))


def env_port(var: str) -> int:
    """A port number from the environment variable `var` (a ConfigError naming it otherwise)."""
    value = os.environ.get(var, "")
    if not value.isascii() or not value.isdigit() or not 0 < int(value) < 65536:
        raise ConfigError(f"{var}={value[:20]!r} is not a port number (1-65535)")
    return int(value)


def parse_yaml(raw: bytes, source: str = "config") -> Any:
    """YAML as a config file may be: UTF-8, at most MAX_CONFIG_BYTES, no duplicate keys, at most
    MAX_YAML_ALIASES aliases (so merge keys cannot blow up). Anything else: one ConfigError."""
    import yaml

    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_CONFIG_BYTES // 1024} KB; is it the config?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{source}: not UTF-8 text (byte {err.start}); save it as UTF-8"
        ) from None
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        what = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{source}: not valid YAML{at}: {what}; fix the file") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply; fix the file") from None
    finally:
        loader.dispose()


def _strict_loader() -> type:
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader that refuses duplicate keys and more than MAX_YAML_ALIASES aliases."""

        aliases = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > MAX_YAML_ALIASES:
                    event = self.peek_event()
                    raise yaml.constructor.ConstructorError(
                        None, None,
                        f"more than {MAX_YAML_ALIASES} aliases (*name); write the values out",
                        event.start_mark,
                    )  # fmt: skip
            return super().compose_node(parent, index)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                seen: set[Any] = set()
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        duplicate = key in seen
                    except TypeError:
                        continue  # unhashable: the base class reports it
                    if duplicate:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {str(key)[:40]!r}", key_node.start_mark
                        )
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


class _LazyLoader:
    cls: type | None = None

    def __call__(self, text: str) -> Any:
        if self.cls is None:
            self.cls = _strict_loader()
        return self.cls(text)


_StrictLoader = _LazyLoader()
