"""The router's second tool: `calculate(expression)`, plain arithmetic evaluated safely.

The expression is parsed with Python's `ast` and only numbers, + - * / // % **, unary signs and
parentheses are evaluated, by this module's own walk of the tree: never `eval`, no names, calls,
attributes or subscripts. Sizes are bounded (the text, the exponent, the result), so a model
cannot make the harness compute 9**9**9. A refused expression is a ToolError whose message goes
back to the model, saying what is allowed.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from harness.strategies.tool_loop import Tool, ToolError

TOOL_NAME = "calculate"
MAX_CHARS = 200
MAX_EXPONENT = 64
MAX_MAGNITUDE = 1e30
ALLOWED = "numbers, + - * / // % ** and parentheses"

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _value(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
            and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _checked(_UNARY[type(node.op)](_value(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ToolError(f"exponent {right:g} is too large (at most {MAX_EXPONENT})")
        try:
            return _checked(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise ToolError("division by zero") from None
        except OverflowError:
            raise ToolError(f"the result is too large (at most {MAX_MAGNITUDE:g} in size)") from None
    raise ToolError(f"only arithmetic is allowed ({ALLOWED}), not {type(node).__name__}")


def _checked(value: Any) -> int | float:
    if isinstance(value, complex):
        raise ToolError("the result is not a real number")
    if isinstance(value, float) and not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        raise ToolError(f"the result is too large (at most {MAX_MAGNITUDE:g} in size)")
    return value


def evaluate(expression: str) -> str:
    """The value of an arithmetic expression, as text (whole numbers without a decimal point)."""
    text = expression.strip().replace("^", "**")
    # Thousands separators ("1,200") are the one liberty taken with Python's syntax.
    text = "".join(ch for i, ch in enumerate(text)
                   if not (ch == "," and 0 < i < len(text) - 1 and text[i - 1].isdigit() and text[i + 1].isdigit()))
    if not text:
        raise ToolError("the expression is empty")
    if len(text) > MAX_CHARS:
        raise ToolError(f"the expression is longer than {MAX_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ToolError(f"not an arithmetic expression: {expression!r} (use {ALLOWED})") from None
    value = _value(tree.body)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(round(value, 10)) if isinstance(value, float) else str(value)


def calculator_tool() -> Tool:
    def run(arguments: dict[str, Any]) -> str:
        expression = arguments.get("expression")
        if not isinstance(expression, str):
            raise ToolError("'expression' must be a string")
        return evaluate(expression)

    return Tool(TOOL_NAME, f"Evaluate an arithmetic expression ({ALLOWED}); returns its value.",
                {"type": "object", "properties": {"expression": {"type": "string", "maxLength": MAX_CHARS,
                                                                 "description": "such as (48 + 48 / 2) * 3"}},
                 "required": ["expression"]}, run)
