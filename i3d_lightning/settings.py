"""What a setting may hold, said once, beside its default.

A dataclass of settings declares each field's range or choices with :func:`setting`, and its type with
its annotation::

    @dataclass(frozen=True)
    class TVL1Parameters:
        scale_step: float = setting(0.8, above=0, below=1)
        median_filtering: int = setting(5, choices=(0, 1, 3, 5))

Its ``__post_init__`` calls :func:`check_settings`, and the start-up check of the configs
(:mod:`~i3d_lightning.config_checks`) reads the same fields through :func:`rules_of`, so a value the
library refuses is refused on the command line too, with the same words, before any work.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from i3d_lightning.errors import UserInputError

#: The annotation's first type -> the kind of value (anything else: ``any``, checked by its owner).
_KINDS = {"int": "int", "float": "number", "bool": "bool", "str": "str"}


@dataclass(frozen=True)
class Allowed:
    """What a value may be: of ``kind`` (``int``, ``number``, ``bool``, ``str``, ``path``: a file or
    folder name, ``any``: checked by its owner), at least ``minimum`` (``above``: greater than it) and at
    most ``maximum`` (``below``: less than it), or one of ``choices``; ``None`` too where ``optional``."""

    kind: str
    minimum: float | None = None
    maximum: float | None = None
    above: bool = False
    below: bool = False
    choices: Sequence[object] = ()
    optional: bool = False

    def problem(self, value: object) -> str | None:
        """What is wrong with ``value`` (a phrase such as ``must be at least 1``), or ``None``."""
        if value is None:
            return None if self.optional else "a value is required"
        if self.choices:  # a string setting compares as text: `precision: 32` is an int in YAML
            allowed = value in self.choices if self.kind != "str" else str(value) in map(str, self.choices)
            allowed = allowed and not (isinstance(value, bool) and self.kind != "bool")  # True == 1 in Python
            return None if allowed else f"choose one of {', '.join(map(str, self.choices))}"
        if self.kind == "bool":
            return None if isinstance(value, bool) else "must be true or false"
        if self.kind == "str":
            return None if isinstance(value, str) else "must be a string"
        if self.kind == "path":  # a file or folder name, which Hydra may have read as a number (2026)
            return None if isinstance(value, str | int | float) and not isinstance(value, bool) else \
                "must be a file or folder name"
        if self.kind not in ("int", "number"):
            return None
        numeric = isinstance(value, int | float) and not isinstance(value, bool) and value == value  # not NaN
        if self.kind == "int" and not (numeric and float(value).is_integer()):
            return f"must be a whole number{self._range()}"
        if not numeric:
            return f"must be a number{self._range()}"
        too_low = self.minimum is not None and (value < self.minimum or (self.above and value == self.minimum))
        too_high = self.maximum is not None and (value > self.maximum or (self.below and value == self.maximum))
        return f"must be{self._range()}" if too_low or too_high else None

    def _range(self) -> str:
        bounds = [f"{'above' if self.above else 'at least'} {self.minimum:g}"] if self.minimum is not None else []
        bounds += [f"{'below' if self.below else 'at most'} {self.maximum:g}"] if self.maximum is not None else []
        return f" {' and '.join(bounds)}" if bounds else ""


def setting(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
            minimum: float | None = None, maximum: float | None = None, above: float | None = None,
            below: float | None = None, choices: Sequence[object] = ()) -> Any:
    """A dataclass field with ``default`` and what it may hold (``above``/``below``: strict bounds); its
    kind and whether ``None`` is allowed come from the annotation."""
    bounds = {"minimum": above if above is not None else minimum, "above": above is not None,
              "maximum": below if below is not None else maximum, "below": below is not None,
              "choices": tuple(choices)}
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"allowed": bounds})


@functools.cache
def rules_of(cls: type) -> dict[str, Allowed]:
    """What each field of the dataclass ``cls`` may hold: its annotation's kind (``X | None``:
    optional) with the bounds of :func:`setting`."""
    rules = {}
    for field in dataclasses.fields(cls):
        annotation = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
        types = [part.strip() for part in annotation.split("|")]
        kind = _KINDS.get(types[0], "any")
        rules[field.name] = Allowed(kind, optional="None" in types, **field.metadata.get("allowed", {}))
    return rules


def check_settings(settings: object) -> None:
    """Refuse the first field of the dataclass instance ``settings`` that breaks its rule, in one line
    naming the field, the value and what is allowed (:class:`~i3d_lightning.errors.UserInputError`)."""
    for name, rule in rules_of(type(settings)).items():
        value = getattr(settings, name)
        problem = rule.problem(value)
        if problem:
            raise UserInputError(f"{name}={shown(value)}: {problem}")


def shown(value: object) -> str:
    """A value as it is typed in a config: ``null`` for ``None``."""
    return "null" if value is None else str(value)
