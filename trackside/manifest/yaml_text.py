"""YAML in and out for manifests: safe loading that refuses duplicate keys, readable dumping."""

from __future__ import annotations

import contextlib
from typing import Any

import yaml

__all__ = ["YamlSyntaxError", "dump_yaml", "load_yaml"]


class YamlSyntaxError(ValueError):
    """Text that is not valid YAML; the message says where."""


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key: construct_mapping reports it
            duplicate = False
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                key_node.start_mark,
            )
        with contextlib.suppress(TypeError):
            seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str) -> Any:
    """The value of one YAML document; ``YamlSyntaxError`` when the text is not valid YAML."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        raise YamlSyntaxError(_describe(exc)) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(" ".join(str(exc).split())) from None
    except RecursionError:
        raise YamlSyntaxError("the YAML document is nested too deeply") from None
    except (ValueError, OverflowError, TypeError) as exc:  # e.g. a date such as 2024-02-30
        raise YamlSyntaxError(f"invalid value: {exc}") from None
    if _is_recursive(data, set()):
        raise YamlSyntaxError("an alias refers to a node that contains it (recursive structure)")
    return data


def _describe(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = exc.problem or exc.context or "invalid YAML"
    context = f" ({exc.context})" if exc.context and exc.problem else ""
    return f"{where}{problem}{context}"


def _is_recursive(value: Any, active: set[int]) -> bool:
    if not isinstance(value, dict | list):
        return False
    if id(value) in active:
        return True
    active.add(id(value))
    children = value.values() if isinstance(value, dict) else value
    found = any(_is_recursive(child, active) for child in children)
    active.discard(id(value))
    return found


class _Dumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that double-quotes strings with line separators or control characters
    (PyYAML would fold a NEL or U+2028 in a single-quoted scalar into a space)."""


def _represent_str(dumper: _Dumper, text: str) -> yaml.ScalarNode:
    special = not text.isprintable() or any(c in text for c in "\x85\u2028\u2029")
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style='"' if special else None)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(data: Any) -> str:
    """Block-style YAML keeping the key order of ``data``; loading it gives ``data`` back."""
    return yaml.dump(
        data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000
    )
