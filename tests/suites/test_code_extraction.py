"""Reading code out of model answers: fenced, bare, completion bodies."""

from __future__ import annotations

from harness.suites.code import defines_function, extract_code, function_under_test, truncate_at_stops


def test_fenced_python_block_preferred_over_prose() -> None:
    text = "Here you go:\n```python\ndef add(a, b):\n    return a + b\n```\nThis adds."
    assert extract_code(text) == "def add(a, b):\n    return a + b\n"


def test_block_that_defines_a_function_wins_over_an_example() -> None:
    text = "Usage:\n```python\nprint(add(1, 2))\n```\nCode:\n```py\ndef add(a, b):\n    return a + b\n```"
    assert extract_code(text) == "def add(a, b):\n    return a + b\n"


def test_other_languages_are_skipped_and_an_unclosed_fence_is_read_to_the_end() -> None:
    text = "```bash\npip install x\n```\n```\ndef f():\n    return 1"
    assert extract_code(text) == "def f():\n    return 1\n"


def test_bare_mbpp_answer_between_begin_and_done() -> None:
    text = "[BEGIN]\ndef square(n):\n    return n * n\n[DONE]\nYou are an expert"
    assert extract_code(text, ("[DONE]",)) == "def square(n):\n    return n * n\n"
    assert extract_code("   ", ("[DONE]",)) == ""


def test_completion_body_keeps_its_indentation() -> None:
    body = "    return x + 1\n\ndef unrelated():\n    pass"
    assert truncate_at_stops(body, ("\ndef",)) == "    return x + 1\n"
    assert extract_code(body, ("\ndef",)) == "    return x + 1\n"


def test_function_names_from_tests_and_definitions() -> None:
    assert function_under_test(["assert add(1, 2) == 3"]) == "add"
    assert function_under_test(["assert math.isclose(area(2), 12.56)"]) == "area"
    assert function_under_test(["assert set(common([1], [1])) == {1}"]) == "common"
    assert function_under_test(["assert not is_odd(2)"]) == "is_odd"
    assert function_under_test(["x = 1"]) is None
    assert defines_function("import os\ndef add(a, b):\n    pass", "add")
    assert not defines_function("    def add(a, b):\n        pass", "add")  # nested, not top level
