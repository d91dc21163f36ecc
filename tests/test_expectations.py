"""The dictionary's expectation classes: GE's own checks, a configuration built once per state."""

from __future__ import annotations

import copy

import great_expectations.expectations as gxe
import pandas as pd

from backbone.expectations import dictionary_expectation
from backbone.validation import build_suite


def test_the_configuration_is_gx_own_under_the_dictionary_type_and_built_once():
    dictionary = dictionary_expectation("ExpectColumnValuesToMatchRegex")(column="code", regex="^[A-Z]+$", meta={"rule": "r"})
    core = gxe.ExpectColumnValuesToMatchRegex(column="code", regex="^[A-Z]+$", meta={"rule": "r"})

    assert dictionary.configuration is dictionary.configuration
    assert dictionary.configuration.type == "expect_dictionary_column_values_to_match_regex"
    assert dictionary.configuration.kwargs == core.configuration.kwargs
    assert dictionary.configuration.meta == core.configuration.meta
    assert dictionary.dict() == core.dict()  # the remembered configuration is no field of the model


def test_setting_a_field_or_copying_builds_the_configuration_again():
    expectation = dictionary_expectation("ExpectColumnValuesToBeInSet")(column="currency", value_set=["EUR"])
    before = expectation.configuration

    expectation.value_set = ["EUR", "USD"]
    assert expectation.configuration is not before
    assert expectation.configuration.kwargs["value_set"] == ["EUR", "USD"]

    expectation.id = "kept-in-a-suite"
    copied = copy.copy(expectation)  # GE's copy drops the id
    assert expectation.configuration.id == "kept-in-a-suite"
    assert copied.configuration.id is None


def test_the_suites_are_made_of_dictionary_expectations_and_gx_still_judges_the_rows():
    suite = build_suite("time_entry", frozenset({"currency"}))
    assert {type(e).__name__ for e in suite.expectations} <= {
        "ExpectDictionaryColumnValuesToNotBeNull",
        "ExpectDictionaryColumnValuesToMatchRegex",
        "ExpectDictionaryColumnValuesToBeInSet",
        "ExpectDictionaryColumnValueLengthsToBeBetween",
    }

    from backbone.validation import _run_suite

    frame = pd.DataFrame({"currency": pd.Series(["EUR", "XXX", None], dtype=object)})
    failed = {failure.rule: positions for _, failure, positions in _run_suite("time_entry", frozenset({"currency"}), frame)}
    assert failed["time_entry.currency.allowed_values"] == [1]
    assert failed["time_entry.currency.required"] == [2]
