"""A transformed template's values for one set of parameters, as CloudFormation would resolve them.

CloudFormation evaluates Conditions, Fn::If, Ref to parameters and pseudo parameters, Fn::Sub and Fn::Join
after the SAM transform. resolve() does the same for what deploy_check asserts on: resources whose
Condition is false are gone, Fn::If picks its branch (AWS::NoValue removes the property), and strings are
filled in. What only exists once deployed (Ref or GetAtt of a resource) stays as it is; in Fn::Sub it
stays as ${Name}.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

NO_VALUE = object()  # Ref AWS::NoValue: the property is left out
SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class Values:
    """Parameter values (defaults, then the given ones) and pseudo parameters for one template."""

    def __init__(self, template: Mapping[str, Any], given: Mapping[str, str], pseudo: Mapping[str, str]) -> None:
        self.refs: dict[str, Any] = dict(pseudo)
        for name, declared in template.get("Parameters", {}).items():
            value = str(given.get(name, declared.get("Default", "")))
            self.refs[name] = value.split(",") if declared.get("Type") == "CommaDelimitedList" else value
        self._conditions = dict(template.get("Conditions", {}))
        self.conditions: dict[str, bool] = {}
        for name in self._conditions:
            self.condition(name)

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.resolve(self._conditions[name]))
        return self.conditions[name]

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [value for value in (self.resolve(item) for item in node) if value is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            [(key, argument)] = node.items()
            if key == "Ref":
                return NO_VALUE if argument == "AWS::NoValue" else self.refs.get(argument, node)
            if key == "Fn::If":
                name, when_true, when_false = argument
                return self.resolve(when_true if self.condition(name) else when_false)
            if key == "Condition":
                return self.condition(argument)
            if key in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or"):
                return self._logic(key, self.resolve(argument))
            if key == "Fn::Join":
                separator, items = self.resolve(argument)
                return separator.join(items) if all(isinstance(item, str) for item in items) else node
            if key == "Fn::Sub":
                return self._sub(argument)
        resolved = {key: self.resolve(value) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not NO_VALUE}

    @staticmethod
    def _logic(key: str, arguments: list[Any]) -> bool:
        if key == "Fn::Equals":
            return bool(arguments[0] == arguments[1])
        if key == "Fn::Not":
            return not arguments[0]
        return all(arguments) if key == "Fn::And" else any(arguments)

    def _sub(self, argument: str | list[Any]) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])
        known = {**self.refs, **{name: self.resolve(value) for name, value in variables.items()}}

        def fill(match: re.Match[str]) -> str:
            value = known.get(match.group(1))
            return value if isinstance(value, str) else match.group(0)

        return SUB_VARIABLE.sub(fill, text)

    def resources(self, transformed: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """The resources CloudFormation would create, with their properties resolved."""
        return {logical_id: self.resolve(resource) for logical_id, resource in transformed["Resources"].items()
                if "Condition" not in resource or self.condition(resource["Condition"])}
