"""The data dictionary's expectations: Great Expectations' own column expectations, each of which
builds its configuration once.

GE rebuilds an expectation's ``configuration`` (a pydantic ``dict()`` and a new
``ExpectationConfiguration``) every time it reads it, and planning one validation run reads it
about 130 times per expectation. That was 36 % of a run's time in the flows (cProfile of
``validate_rows`` inside ``dag.test()``): 41 expectations on 120 time entries took about a second.

Each class here is a custom expectation in GE's documented sense (a subclass of a core one, found
by its own expectation type, here ``expect_dictionary_…``) whose only change is that it keeps the
configuration it built until one of its fields is set again or it is copied. Its checks, metrics and
results are GE's. An expectation's fields nested in place (``meta["x"] = …``) are not noticed: the
dictionary's suites are built once and never edited afterwards.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from great_expectations.expectations import Expectation
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

PREFIX = "ExpectDictionary"


class RemembersConfiguration:
    """Mixin (first base) for a GE expectation: ``configuration`` built once per state of its fields."""

    _remembered_configuration: ExpectationConfiguration | None

    @property
    def configuration(self) -> ExpectationConfiguration:
        remembered = self._remembered_configuration
        if remembered is None:
            remembered = super().configuration  # type: ignore[misc] - GE's Expectation is the next base
            object.__setattr__(self, "_remembered_configuration", remembered)
        return remembered

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name != "_remembered_configuration":
            object.__setattr__(self, "_remembered_configuration", None)

    def _copy_and_set_values(self, *args: Any, **kwargs: Any) -> Any:  # pydantic v1's copy(update=…) path
        copied = super()._copy_and_set_values(*args, **kwargs)  # type: ignore[misc]
        object.__setattr__(copied, "_remembered_configuration", None)
        return copied


@cache
def dictionary_expectation(core_name: str) -> type[Expectation]:
    """The dictionary's variant of GE's core expectation ``core_name`` (e.g.
    ``ExpectColumnValuesToMatchRegex`` → ``ExpectDictionaryColumnValuesToMatchRegex``), registered
    with GE under its own expectation type the first time it is asked for."""
    import great_expectations.expectations as gxe
    from great_expectations.compatibility.pydantic import PrivateAttr

    core = getattr(gxe, core_name)
    namespace = {"__module__": __name__, "__doc__": core.__doc__, "_remembered_configuration": PrivateAttr(default=None)}
    return type(PREFIX + core_name.removeprefix("Expect"), (RemembersConfiguration, core), namespace)
