"""CloudFormation's intrinsic functions, resolved the way a deployment of the template would,
as far as that can be known before one: parameters (defaults and overrides), pseudo parameters,
mappings, conditions, and the names and ARNs of the template's own resources.

``Resolver.resolve`` turns a property tree into plain values; what only CloudFormation could
compute (an API's id, an imported value, an SSM parameter) becomes an ``Unresolved`` marker that
the mappers report where it is used.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import Final

from kubelambda.api.sam.resources import Stack, get_att, ref
from kubelambda.api.sam.template import TemplateError, UnknownTag
from kubelambda.api.sam.values import NO_VALUE, Unresolved, find_unresolved

_SUB_VARIABLE: Final = re.compile(r"\$\{([^}]*)\}")


class Resolver:
    """Resolves one template's intrinsic functions. Raises TemplateError for overrides that do
    not fit the template's Parameters (unknown names, values outside AllowedValues)."""

    def __init__(
        self, template: Mapping[str, object], *, overrides: Mapping[str, str], stack: Stack
    ) -> None:
        self.stack = stack
        self.resources = _section(template, "Resources")
        self._mappings = _section(template, "Mappings")
        self._conditions = _section(template, "Conditions")
        self._parameters = _parameter_values(_section(template, "Parameters"), overrides)
        self._evaluating: set[str] = set()
        self._functions: dict[str, Callable[[object], object]] = {
            "Ref": self._ref,
            "Fn::Sub": self._sub,
            "Fn::GetAtt": self._get_att,
            "Fn::Join": self._join,
            "Fn::Select": self._select,
            "Fn::Split": self._split,
            "Fn::FindInMap": self._find_in_map,
            "Fn::If": self._if,
            "Fn::Equals": partial(self._logic, "Fn::Equals"),
            "Fn::Not": partial(self._logic, "Fn::Not"),
            "Fn::And": partial(self._logic, "Fn::And"),
            "Fn::Or": partial(self._logic, "Fn::Or"),
            "Fn::Base64": self._base64,
            "Fn::ToJsonString": self._to_json_string,
            "Fn::Length": self._length,
        }

    def resolve(self, value: object) -> object:
        """``value`` with every intrinsic function applied (Unresolved where it cannot be)."""
        if isinstance(value, UnknownTag):
            return Unresolved(f"YAML tag {value.tag} is not a CloudFormation intrinsic function")
        if isinstance(value, Mapping):
            if len(value) == 1:
                [(key, argument)] = value.items()
                if key == "Ref" or (isinstance(key, str) and key.startswith("Fn::")):
                    function = self._functions.get(key)
                    if function is None:
                        return Unresolved(f"{key} is known only when CloudFormation deploys")
                    return function(argument)
            resolved = {str(k): self.resolve(v) for k, v in value.items()}
            return {k: v for k, v in resolved.items() if v is not NO_VALUE}
        if isinstance(value, list):
            return [item for item in map(self.resolve, value) if item is not NO_VALUE]
        return value

    def condition(self, name: str) -> bool | Unresolved:
        """The value of the template's condition ``name``."""
        if name not in self._conditions:
            return Unresolved(f"condition {name} is not in the template's Conditions")
        if name in self._evaluating:
            return Unresolved(f"condition {name} refers to itself")
        self._evaluating.add(name)
        try:
            return self._truth(self._conditions[name])
        finally:
            self._evaluating.discard(name)

    # --- conditions ----------------------------------------------------------------------

    def _truth(self, value: object) -> bool | Unresolved:
        if isinstance(value, Mapping) and len(value) == 1:
            [(key, argument)] = value.items()
            if key == "Condition" and isinstance(argument, str):
                return self.condition(argument)
            if key in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or"):
                return self._logic(key, argument)
        resolved = self.resolve(value)
        if isinstance(resolved, Unresolved | bool):
            return resolved
        if isinstance(resolved, str) and resolved.lower() in ("true", "false"):
            return resolved.lower() == "true"
        return Unresolved(f"a condition must be true or false, not {resolved!r}")

    def _logic(self, key: str, argument: object) -> bool | Unresolved:
        if not isinstance(argument, list):
            return Unresolved(f"{key} takes a list")
        if key == "Fn::Equals":
            if len(argument) != 2:
                return Unresolved("Fn::Equals takes two values")
            left, right = (self.resolve(item) for item in argument)
            unresolved = find_unresolved([left, right])
            return unresolved if unresolved is not None else _text(left) == _text(right)
        values = [self._truth(item) for item in argument]
        for truth in values:
            if isinstance(truth, Unresolved):
                return truth
        if key == "Fn::Not":
            return not values[0] if len(values) == 1 else Unresolved("Fn::Not takes one condition")
        return all(values) if key == "Fn::And" else any(values)

    # --- functions -----------------------------------------------------------------------

    def _ref(self, argument: object) -> object:
        name = self.resolve(argument)
        if not isinstance(name, str):
            return Unresolved(f"Ref takes a name, not {name!r}")
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self._parameters:
            return self._parameters[name]
        pseudo = self.stack.pseudo(name)
        if pseudo is not None:
            return pseudo
        resource = self.resources.get(name)
        if isinstance(resource, Mapping):
            return ref(name, resource, self)
        return Unresolved(f"Ref {name}: no parameter, pseudo parameter or resource of that name")

    def _get_att(self, argument: object) -> object:
        resolved = self.resolve(argument)
        if not (isinstance(resolved, list) and len(resolved) == 2):
            return Unresolved(f"Fn::GetAtt takes [resource, attribute], not {resolved!r}")
        name, attribute = resolved
        resource = self.resources.get(name) if isinstance(name, str) else None
        if not isinstance(resource, Mapping) or not isinstance(attribute, str):
            return Unresolved(f"Fn::GetAtt {name}.{attribute}: no resource {name} in the template")
        return get_att(name, resource, attribute, self)

    def _sub(self, argument: object) -> object:
        variables: Mapping[object, object] = {}
        if isinstance(argument, list) and len(argument) == 2:
            argument, given = argument
            variables = given if isinstance(given, Mapping) else {}
        text = self.resolve(argument)
        if not isinstance(text, str):
            return Unresolved(f"Fn::Sub takes a string, not {text!r}")
        problems: list[Unresolved] = []

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"  # ${!Literal} stays as ${Literal}
            if name in variables:
                value = self.resolve(variables[name])
            elif "." in name and name.split(".", 1)[0] in self.resources:
                value = self._get_att(name.split(".", 1))
            else:
                value = self._ref(name)
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                return str(value)
            problems.append(
                value
                if isinstance(value, Unresolved)
                else Unresolved(f"Fn::Sub ${{{name}}} is not a string: {value!r}")
            )
            return ""

        result = _SUB_VARIABLE.sub(substitute, text)
        return problems[0] if problems else result

    def _join(self, argument: object) -> object:
        resolved = self.resolve(argument)
        if not (isinstance(resolved, list) and len(resolved) == 2):
            return Unresolved("Fn::Join takes [delimiter, [values]]")
        delimiter, values = resolved
        unresolved = find_unresolved(resolved)
        if unresolved is not None:
            return unresolved
        if not isinstance(delimiter, str) or not isinstance(values, list):
            return Unresolved("Fn::Join takes [delimiter, [values]]")
        return delimiter.join(_text(value) for value in values)

    def _select(self, argument: object) -> object:
        resolved = self.resolve(argument)
        if not (isinstance(resolved, list) and len(resolved) == 2):
            return Unresolved("Fn::Select takes [index, [values]]")
        index, values = resolved
        if isinstance(values, Unresolved):
            return values
        try:
            if not isinstance(values, list):
                raise TypeError("not a list")
            return values[int(str(index))]
        except (ValueError, IndexError, TypeError):
            return Unresolved(f"Fn::Select: no item {index!r} in {values!r}")

    def _split(self, argument: object) -> object:
        resolved = self.resolve(argument)
        if not (isinstance(resolved, list) and len(resolved) == 2):
            return Unresolved("Fn::Split takes [delimiter, string]")
        delimiter, text = resolved
        if isinstance(text, Unresolved):
            return text
        if not isinstance(delimiter, str) or not delimiter or not isinstance(text, str):
            return Unresolved("Fn::Split takes [delimiter, string]")
        return text.split(delimiter)

    def _find_in_map(self, argument: object) -> object:
        resolved = self.resolve(argument)
        unresolved = find_unresolved(resolved)
        if unresolved is not None:
            return unresolved
        if not (isinstance(resolved, list) and len(resolved) == 3):
            return Unresolved("Fn::FindInMap takes [map, top-level key, second-level key]")
        value: object = self._mappings
        for key in resolved:
            if not isinstance(value, Mapping) or str(key) not in value:
                return Unresolved(f"Fn::FindInMap: no {key!r} in Mappings {resolved[0]}")
            value = value[str(key)]
        return self.resolve(value)

    def _if(self, argument: object) -> object:
        if not (isinstance(argument, list) and len(argument) == 3):
            return Unresolved("Fn::If takes [condition, value if true, value if false]")
        name, when_true, when_false = argument
        truth = self.condition(name) if isinstance(name, str) else Unresolved("Fn::If: bad name")
        if isinstance(truth, Unresolved):
            return truth
        return self.resolve(when_true if truth else when_false)

    def _base64(self, argument: object) -> object:
        text = self.resolve(argument)
        if not isinstance(text, str):
            return text if isinstance(text, Unresolved) else Unresolved("Fn::Base64 takes text")
        return base64.b64encode(text.encode()).decode("ascii")

    def _to_json_string(self, argument: object) -> object:
        value = self.resolve(argument)
        unresolved = find_unresolved(value)
        if unresolved is not None:
            return unresolved
        return json.dumps(value, separators=(",", ":"))

    def _length(self, argument: object) -> object:
        value = self.resolve(argument)
        return len(value) if isinstance(value, list) else Unresolved("Fn::Length takes a list")


def _section(template: Mapping[str, object], name: str) -> Mapping[str, object]:
    section = template.get(name)
    return section if isinstance(section, Mapping) else {}


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parameter_values(
    declared: Mapping[str, object], overrides: Mapping[str, str]
) -> dict[str, object]:
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        known = ", ".join(declared) or "none"
        raise TemplateError(
            f"parameter overrides name {', '.join(unknown)}, which the template's Parameters"
            f" do not declare (it declares: {known})"
        )
    values: dict[str, object] = {}
    for name, spec in declared.items():
        spec = spec if isinstance(spec, Mapping) else {}
        kind = str(spec.get("Type", "String"))
        if name in overrides:
            value: object = overrides[name]
            _check_allowed(name, spec, overrides[name])
        elif "Default" in spec:
            value = _text(spec["Default"])
        else:
            values[name] = Unresolved(
                f"parameter {name} has no Default: give it with --parameter-overrides {name}=VALUE"
            )
            continue
        if kind.startswith("AWS::SSM::Parameter::Value"):
            values[name] = Unresolved(
                f"parameter {name} is read from SSM Parameter Store when CloudFormation deploys"
            )
        elif kind == "CommaDelimitedList" or kind.startswith("List<"):
            values[name] = [item.strip() for item in str(value).split(",")]
        else:
            values[name] = str(value)
    return values


def _check_allowed(name: str, spec: Mapping[object, object], value: str) -> None:
    allowed = spec.get("AllowedValues")
    if isinstance(allowed, list) and value not in [_text(item) for item in allowed]:
        choices = ", ".join(_text(item) for item in allowed)
        raise TemplateError(
            f"parameter {name}={value!r} is not one of its AllowedValues: {choices}"
        )
    pattern = spec.get("AllowedPattern")
    if isinstance(pattern, str):
        try:
            fits = re.fullmatch(pattern, value) is not None
        except re.error:
            return  # a Java pattern Python cannot read: CloudFormation checks it at deploy time
        if not fits:
            raise TemplateError(
                f"parameter {name}={value!r} does not match its AllowedPattern {pattern}"
            )
