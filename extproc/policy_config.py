"""The policy configuration file: which policies run, in which order, with which settings.

    policies:                 # the default chain, run in order
      - type: request_guard
        max_tokens: 8192
      - type: tool_call_judge
        judge: {base_url: "http://127.0.0.1:${MOCK_LLM_PORT:-9000}/v1", model: judge-mock}
    chains:                   # named chains, picked per caller key
      relaxed: [{type: noop}]
    validate_streams: false   # check every rewritten stream's invariants at runtime
    audit: {store_originals: false}  # keep redacted originals in decision records
    providers: {}             # model routing: see extproc/routing.py
    routes: [...]

Policy classes are found through a registry (type name -> "module:Class") and imported
only when a file uses that type. Each entry is validated against the class's own nested
`Config` model, so this module knows no policy's fields. `${VAR}` and `${VAR:-default}`
in string values are expanded from the environment (`$${` writes a literal `${`). Every
mistake becomes a `ConfigError` whose lines name the file, the entry and the field.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError

from extproc.limits.config import LimitsConfig
from extproc.policies.base import DEFAULT_CHAIN, Chains, Policy, PolicyChain, PolicyConfig
from extproc.policies.noop import NoOpConfig
from extproc.routing import ProviderConfig, RouteConfig, check_routing

# Type name -> "module:Class". Modules are imported only when a config uses the type.
POLICY_TYPES: dict[str, str] = {
    "noop": "extproc.policies.noop:NoOpPolicy",
    "all_caps": "extproc.policies.all_caps:AllCapsPolicy",
    "debug_log": "extproc.policies.debug_log:DebugLogPolicy",
    "string_replacement": "extproc.policies.string_replacement:StringReplacementPolicy",
    "pii_redaction": "extproc.policies.pii_redaction:PiiRedactionPolicy",
    "tool_filter": "extproc.policies.tool_filter:ToolFilterPolicy",
    "request_guard": "extproc.policies.request_guard:RequestGuardPolicy",
    "tool_call_judge": "extproc.policies.tool_call_judge:ToolCallJudgePolicy",
    "tool_approval": "extproc.policies.tool_approval:ToolApprovalPolicy",
}

# A registry maps a type name to "module:Class" or (handy in tests) the class itself.
Registry = Mapping[str, str | type[Policy[Any]]]

PolicyEntries = list[SerializeAsAny[PolicyConfig]]


class ConfigError(ValueError):
    """The configuration is unusable. The message has one line per problem, each naming
    the file, the entry (`policies[2] (tool_filter)`) and the field."""


class AuditConfig(BaseModel):
    """What decision records may hold (README, "Observe")."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # The original text a redaction or replacement removed, beside what replaced it:
    # the very data the policy hides, so off unless asked for.
    store_originals: bool = False


class PolicyFile(BaseModel):
    """A validated policy file. Policy entries are instances of each policy's own
    `Config` subclass (use `load_config`, not `model_validate`, to get them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policies: PolicyEntries = Field(default_factory=lambda: _noop_entries())
    chains: dict[str, PolicyEntries] = Field(default_factory=dict)
    validate_streams: bool = False
    audit: AuditConfig = Field(default_factory=AuditConfig)
    # Model routing (extproc/routing.py): providers merge over the built-in two; routes,
    # when given, replace the default table.
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    routes: list[RouteConfig] | None = None
    # Per-caller rate limits and budgets (extproc/limits/config.py).
    limits: LimitsConfig = Field(default_factory=LimitsConfig)

    def entries(self) -> list[PolicyConfig]:
        """Every policy entry of every chain."""
        return [*self.policies, *(e for chain in self.chains.values() for e in chain)]


def _noop_entries() -> list[PolicyConfig]:
    return [NoOpConfig()]


def _config_model(cls: type[Policy[Any]]) -> type[PolicyConfig]:
    model: type[PolicyConfig] = cls.Config
    return model


def default_config() -> PolicyFile:
    """The configuration without a file: the noop chain."""
    return PolicyFile()


# -- policy classes -------------------------------------------------------------------


def resolve_policy_class(type_name: str, registry: Registry | None = None) -> type[Policy[Any]]:
    """The policy class for `type_name`, importing its module now. ConfigError (without
    a file name) for an unknown type or a module that cannot be imported."""
    reg = POLICY_TYPES if registry is None else registry
    target = reg.get(type_name)
    if target is None:
        message = f"unknown policy type {type_name!r} (known: {', '.join(sorted(reg))})"
        close = difflib.get_close_matches(type_name, list(reg), n=1)
        raise ConfigError(message + (f"; did you mean {close[0]!r}?" if close else ""))
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except Exception as exc:  # missing module, broken import, missing class
            raise ConfigError(
                f"cannot load policy type {type_name!r} from {target} ({type(exc).__name__}: {exc})"
            ) from exc
    else:
        cls = target
    if not (isinstance(cls, type) and issubclass(cls, Policy)):
        raise ConfigError(f"policy type {type_name!r}: {target!r} is not a Policy subclass")
    if not (isinstance(cls.Config, type) and issubclass(cls.Config, PolicyConfig)):
        raise ConfigError(f"policy type {type_name!r}: {cls.__name__}.Config is not a PolicyConfig")
    return cls


def build_chain(entries: Iterable[PolicyConfig], registry: Registry | None = None) -> PolicyChain:
    """Instantiate each entry's policy class with its config, in order."""
    policies = []
    for entry in entries:
        cls = resolve_policy_class(entry.type, registry)
        model = _config_model(cls)
        if not isinstance(entry, model):  # e.g. a bare PolicyConfig(type="noop")
            entry = model.model_validate(entry.model_dump(exclude_unset=True))
        policies.append(cls(entry))
    return PolicyChain(policies)


def build_chains(config: PolicyFile, registry: Registry | None = None) -> Chains:
    """The default chain (`policies`), then each named chain."""
    named = {name: build_chain(entries, registry) for name, entries in config.chains.items()}
    return Chains(build_chain(config.policies, registry), named)


def reads_responses(config: PolicyFile, registry: Registry | None = None) -> bool:
    """Whether any chain of the file has a policy that looks at responses, from the
    policy classes alone (no policy is built)."""
    return any(
        resolve_policy_class(entry.type, registry).reads_responses() for entry in config.entries()
    )


# -- loading --------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)


_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Loc = tuple[str | int, ...]


def _expand(value: Any, loc: Loc, env: Mapping[str, str], errors: list[tuple[Loc, str]]) -> Any:
    """`${VAR}` / `${VAR:-default}` in string values (keys untouched). As in the shell,
    the default also replaces a variable that is set but empty."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name is None:  # "$${": a literal "${"
                return "${"
            found = env.get(name)
            if found:
                return found
            if default is not None:
                return default
            if found is None:
                errors.append(
                    (
                        loc,
                        f"environment variable {name} is not set "
                        f"(write ${{{name}:-default}} to give a default)",
                    )
                )
            return ""

        return _VAR.sub(substitute, value)
    if isinstance(value, dict):
        return {k: _expand(v, (*loc, k), env, errors) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, (*loc, i), env, errors) for i, v in enumerate(value)]
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, (str, int, float, bool)):
        return f"{type(value).__name__} {value!r}"
    return {"dict": "a mapping", "list": "a list"}.get(type(value).__name__, type(value).__name__)


def _fmt_loc(parts: Iterable[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _model_at(model: type[BaseModel] | None, loc: Loc) -> type[BaseModel] | None:
    """The (nested) model a pydantic error location points into, when it can be found."""
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return None
        model = _submodel(model.model_fields[part].annotation)
    return model


def _pydantic_messages(exc: ValidationError, model: type[BaseModel]) -> list[tuple[Loc, str]]:
    out = []
    for err in exc.errors(include_url=False):
        loc: Loc = tuple(err["loc"])
        kind, msg, given = err["type"], err["msg"], err.get("input")
        if kind == "extra_forbidden":
            loc, name = loc[:-1], loc[-1]
            msg = f"unknown field {name!r}"
            parent = _model_at(model, loc)
            if parent is not None:
                msg += f" (known: {', '.join(sorted(parent.model_fields))})"
        elif kind == "missing":
            msg = "missing required field"
        else:
            msg = msg.removeprefix("Value error, ")
            # Echo numbers and choices, never other strings (they may be expanded secrets).
            if isinstance(given, (int, float, bool)) or (
                isinstance(given, str) and kind in ("literal_error", "enum")
            ):
                msg += f" (got {given!r})"
        out.append((loc, msg))
    return out


class _Loader:
    """One load: the document, the registry and the problems found so far."""

    def __init__(self, where: str, registry: Registry) -> None:
        self.where = where
        self.registry = registry
        self.doc: dict[str, Any] = {}
        self.errors: list[str] = []

    def add(self, loc: Loc, message: str) -> None:
        """Record a problem at a document location, labelled `policies[0] (type): field`."""
        if len(loc) >= 2 and loc[0] == "policies" and isinstance(loc[1], int):
            entry_loc, field = loc[:2], loc[2:]
        elif len(loc) >= 3 and loc[0] == "chains" and isinstance(loc[2], int):
            entry_loc, field = loc[:3], loc[3:]
        else:
            entry_loc, field = (), loc
        parts = []
        if entry_loc:
            label = _fmt_loc(entry_loc)
            entry: Any = self.doc
            try:
                for part in entry_loc:
                    entry = entry[part]
            except (KeyError, IndexError, TypeError):
                entry = None
            type_name = entry.get("type") if isinstance(entry, dict) else None
            if isinstance(type_name, str) and type_name in self.registry:
                label += f" ({type_name})"
            parts.append(label)
        if field:
            parts.append(_fmt_loc(field))
        self.errors.append(f"{self.where}: {': '.join([*parts, message])}")

    def fail(self) -> ConfigError:
        return ConfigError("\n".join(self.errors))

    def entries(self, value: Any, loc: Loc) -> list[PolicyConfig]:
        if not isinstance(value, list):
            self.add(loc, f"expected a list of policy entries, got {_kind(value)}")
            return []
        known = ", ".join(sorted(self.registry))
        out = []
        for i, entry in enumerate(value):
            here = (*loc, i)
            if not isinstance(entry, dict):
                self.add(here, f"expected a mapping such as {{type: noop}}, got {_kind(entry)}")
                continue
            type_name = entry.get("type")
            if type_name is None:
                self.add(here, f"missing 'type' (known: {known})")
                continue
            if not isinstance(type_name, str):
                self.add(here, f"'type' must be a string, got {_kind(type_name)}")
                continue
            try:
                cls = resolve_policy_class(type_name, self.registry)
            except ConfigError as exc:
                self.add(here, str(exc))
                continue
            try:
                out.append(_config_model(cls).model_validate(entry))
            except ValidationError as exc:
                for field_loc, message in _pydantic_messages(exc, _config_model(cls)):
                    self.add((*here, *field_loc), message)
        return out

    def chains(self, value: Any) -> dict[str, list[PolicyConfig]]:
        if not isinstance(value, dict):
            self.add(
                ("chains",), f"expected a mapping of chain name -> policies, got {_kind(value)}"
            )
            return {}
        out = {}
        for name, entries in value.items():
            if not isinstance(name, str) or not name:
                self.add(("chains",), f"chain names must be non-empty strings, got {_kind(name)}")
            elif name == DEFAULT_CHAIN:
                self.add(("chains", name), "the name 'default' is reserved for 'policies'")
            else:
                out[name] = self.entries(entries, ("chains", name))
        return out

    def load(self, doc: dict[str, Any], env: Mapping[str, str]) -> PolicyFile:
        problems: list[tuple[Loc, str]] = []
        self.doc = _expand(doc, (), env, problems)
        for loc, message in problems:
            self.add(loc, message)
        if self.errors:
            raise self.fail()
        fields = dict(self.doc)
        if "policies" in fields:
            fields["policies"] = self.entries(fields["policies"], ("policies",))
        if "chains" in fields:
            fields["chains"] = self.chains(fields["chains"])
        try:
            config = PolicyFile.model_validate(fields)
        except ValidationError as exc:
            for loc, message in _pydantic_messages(exc, PolicyFile):
                self.add(loc, message)
            raise self.fail() from None
        for problem in check_routing(config.providers, config.routes):
            self.errors.append(f"{self.where}: {problem}")
        if self.errors:
            raise self.fail()
        return config


def load_config(
    path: str | Path,
    registry: Registry | None = None,
    env: Mapping[str, str] | None = None,
) -> PolicyFile:
    """Read and validate a YAML configuration file. An empty file gives `default_config()`.
    Raises ConfigError, one line per problem, each starting with the file name."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read: {exc}") from None
    try:
        doc = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or str(exc)
        detail = f"{problem} ({exc.context})" if exc.context else problem
        raise ConfigError(f"{where}: invalid YAML{at}: {detail}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML: {exc}") from None
    if doc is None:
        return default_config()
    if not isinstance(doc, dict):
        raise ConfigError(
            f"{where}: expected a mapping with 'policies' (and optionally 'chains', "
            f"'providers', 'routes', 'validate_streams') at the top level, got {_kind(doc)}"
        )
    loader = _Loader(where, POLICY_TYPES if registry is None else registry)
    return loader.load(doc, os.environ if env is None else env)
