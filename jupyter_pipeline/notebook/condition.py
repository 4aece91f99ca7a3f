"""Stage conditions (``if:EXPR``): parse, check, evaluate and explain them, with no ``eval``.

A condition compares scalar values (numbers, strings, booleans) that upstream stages bind and
pipeline parameters: ``accuracy >= min_accuracy``, ``mode == "full"``, combined with ``and``,
``or`` and ``not``. It is parsed with Python's ``ast`` and only the nodes of that grammar are
accepted; :func:`evaluate` walks the tree itself, so a condition can never run code.
"""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass

from .pipeline import Problem

#: Comparison operators a condition may use, with their function, symbol and negation.
OPERATORS = {
    ast.Eq: (operator.eq, "==", ast.NotEq), ast.NotEq: (operator.ne, "!=", ast.Eq),
    ast.Lt: (operator.lt, "<", ast.GtE), ast.LtE: (operator.le, "<=", ast.Gt),
    ast.Gt: (operator.gt, ">", ast.LtE), ast.GtE: (operator.ge, ">=", ast.Lt),
}
#: What a condition may hold, in words (for error messages).
GRAMMAR = ("a condition compares names and literals (numbers, strings in quotes, True/False) with ==, !=, <, "
           "<=, > or >=, and combines comparisons with and, or, not and parentheses")
#: Value kinds a condition compares (a scalar's type on Kubeflow): see :func:`kinds`.
NUMBER, STRING, BOOLEAN = "float", "str", "bool"


class ConditionError(ValueError):
    """Raised when a condition's text is not in the condition grammar."""


@dataclass(frozen=True)
class Condition:
    """A parsed condition: its text, its syntax tree (an ``ast.expr``) and the names it reads."""

    text: str
    tree: ast.expr
    names: tuple[str, ...]  # in order of first appearance

    def __str__(self) -> str:
        return self.text


def parse(text: str) -> Condition:
    """Parse ``text`` as a condition; raises :class:`ConditionError` saying what is not allowed."""
    source = " ".join(text.split())
    if not source:
        raise ConditionError("the condition is empty; write one such as `accuracy >= min_accuracy`")
    try:
        tree = ast.parse(source, mode="eval").body
    except SyntaxError as exc:
        raise ConditionError(f"`{source}` is not a valid expression ({exc.msg}); {GRAMMAR}") from None
    names: list[str] = []
    _check(tree, source, names, top=True)
    return Condition(source, tree, tuple(dict.fromkeys(names)))


def _check(node: ast.AST, source: str, names: list[str], top: bool = False) -> None:
    """Accept ``node`` if it belongs to the grammar (collecting the names it reads), else raise."""
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, source, names, top=True)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _check(node.operand, source, names, top=True)
    elif isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        for op in node.ops:
            if type(op) not in OPERATORS:
                raise ConditionError(f"`{source}` uses `{_symbol(op)}`; {GRAMMAR}")
        for left, right in zip(operands, operands[1:]):
            if _literal(left) is not None and _literal(right) is not None:
                raise ConditionError(f"`{source}` compares two literals ({ast.unparse(left)} and "
                                     f"{ast.unparse(right)}); a comparison needs a name on one side")
        for operand in operands:
            _check(operand, source, names)
    elif isinstance(node, ast.Name):
        names.append(node.id)
    elif _literal(node) is not None:
        if top:
            raise ConditionError(f"`{source}` is a literal, always true or always false; compare a name instead")
        value = _literal(node)
        if isinstance(value, str) and ("'" in value or "\\" in value):
            # Kubeflow writes string literals into its trigger expressions unescaped.
            raise ConditionError(f"`{source}`: a string in a condition may not contain ' or \\")
    else:
        what = ast.unparse(node)
        raise ConditionError(f"`{source}` contains `{what}` ({_kind_of(node)}); {GRAMMAR}")


def _literal(node: ast.AST):
    """The literal value of ``node`` (a number, string or boolean, a negative number), else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        value = node.operand.value
        return -value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
        return node.value
    return None


def _symbol(op: ast.AST) -> str:
    return {ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}.get(type(op), type(op).__name__)


def _kind_of(node: ast.AST) -> str:
    kinds = {ast.Call: "a call", ast.Attribute: "an attribute", ast.Subscript: "an index", ast.BinOp: "arithmetic",
             ast.Lambda: "a lambda", ast.IfExp: "an if-expression", ast.NamedExpr: "an assignment",
             ast.List: "a list", ast.Tuple: "a tuple", ast.Dict: "a dict", ast.Set: "a set"}
    if isinstance(node, ast.Constant):
        return "a literal that is not a number, string or boolean"
    return kinds.get(type(node), f"a {type(node).__name__} expression")


# -- evaluation ------------------------------------------------------------------------------------
def evaluate(condition: Condition, values: dict) -> tuple[bool, str]:
    """Whether ``condition`` holds for ``values`` (name -> scalar), and why, in words
    (``accuracy=0.91 < min_accuracy=0.95``). Raises ``TypeError`` for values that do not compare
    (a string with a number) and ``KeyError`` for a name ``values`` lacks."""
    holds = _value(condition.tree, values)
    return holds, _explain(condition.tree, values, holds)


def _value(node: ast.AST, values: dict) -> bool:
    if isinstance(node, ast.BoolOp):
        results = (_value(v, values) for v in node.values)
        return all(results) if isinstance(node.op, ast.And) else any(results)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _value(node.operand, values)
    if isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        return all(_holds(op, _operand(a, values), _operand(b, values))
                   for op, a, b in zip(node.ops, operands, operands[1:]))
    return bool(_operand(node, values))


def _holds(op: ast.cmpop, left, right) -> bool:
    if isinstance(left, str) != isinstance(right, str) and type(op) not in (ast.Eq, ast.NotEq):
        other = right if isinstance(left, str) else left
        raise TypeError(f"cannot order {left!r} and {right!r} (a string and a {type(other).__name__})")
    return bool(OPERATORS[type(op)][0](left, right))


def _operand(node: ast.AST, values: dict):
    if isinstance(node, ast.Name):
        value = values[node.id]
        plain = scalar(value)  # a NumPy scalar (a live kernel's) compares and prints as the number it holds
        return value if plain is None else plain
    return _literal(node)


def _symbol_of(op: ast.cmpop, negate: bool = False) -> str:
    op_type = OPERATORS[type(op)][2] if negate else type(op)
    return OPERATORS[op_type][1]


def _shown(node: ast.AST, values: dict) -> str:
    """An operand as the explanation shows it: ``name=value`` or the literal."""
    if isinstance(node, ast.Name):
        return f"{node.id}={_operand(node, values)!r}"
    return repr(_literal(node))


def _explain(node: ast.AST, values: dict, holds: bool) -> str:
    """Why ``node`` evaluates to ``holds``: the comparisons that decide it, with their values."""
    if isinstance(node, ast.BoolOp):
        deciding_all = isinstance(node.op, ast.And) == holds  # and: true needs all; or: false needs all
        parts = [_explain(v, values, holds) for v in node.values if _value(v, values) == holds]
        return " and ".join(parts) if deciding_all else parts[0]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return _explain(node.operand, values, not holds)
    if isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        links = list(zip(node.ops, operands, operands[1:]))
        if not holds:  # the first link that fails, its operator negated
            links = [next((op, a, b) for op, a, b in links
                          if not _holds(op, _operand(a, values), _operand(b, values)))]
        return " and ".join(f"{_shown(a, values)} {_symbol_of(op, negate=not holds)} {_shown(b, values)}"
                            for op, a, b in links)
    return _shown(node, values)


def scalar(value):
    """``value`` as a plain number, string or boolean (NumPy scalars unwrapped), or ``None`` when it is not one."""
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()
    if isinstance(value, (bool, int, float, str)):
        return value
    return None


# -- kinds (types on Kubeflow) and conjunctions ----------------------------------------------------
def kind_of_value(value) -> str | None:
    """The kind of a literal or parameter value: NUMBER, STRING, BOOLEAN, or None (not a scalar)."""
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, (int, float)):
        return NUMBER
    if isinstance(value, str):
        return STRING
    return None


def comparisons(condition: Condition):
    """Every comparison link ``(left, op, right)`` of the condition, and each bare name as ``(name, None, None)``."""
    out = []

    def walk(node):
        if isinstance(node, ast.BoolOp):
            for v in node.values:
                walk(v)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            walk(node.operand)
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            out.extend(zip(operands, node.ops, operands[1:]))
        else:
            out.append((node, None, None))
    walk(condition.tree)
    return out


def kinds(condition: Condition, known: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The kind each name of ``condition`` is compared as, from ``known`` kinds (parameters) and the
    literals it meets; and the mismatches found, in words. A name only ever compared with other
    unknown names is a number; a bare name (``if:passed``) is a boolean."""
    found: dict[str, str] = dict(known)
    problems: list[str] = []

    def kind(node):
        if isinstance(node, ast.Name):
            return found.get(node.id)
        return kind_of_value(_literal(node))

    links = comparisons(condition)
    for _ in range(2):  # a second pass spreads kinds learnt from literals across name-to-name links
        for left, op, right in links:
            if op is None:
                if isinstance(left, ast.Name):
                    found.setdefault(left.id, BOOLEAN)
                continue
            a, b = kind(left), kind(right)
            for node, other in ((left, b), (right, a)):
                if isinstance(node, ast.Name) and other and node.id not in found:
                    found[node.id] = other
    for left, op, right in links:
        a, b = kind(left), kind(right)
        if op is not None and a and b and a != b:
            problems.append(f"`{ast.unparse(left)} {OPERATORS[type(op)][1]} {ast.unparse(right)}` compares a "
                            f"{_word(a)} with a {_word(b)}")
        elif op is not None and a == b == BOOLEAN and type(op) not in (ast.Eq, ast.NotEq):
            problems.append(f"`{ast.unparse(left)} {OPERATORS[type(op)][1]} {ast.unparse(right)}` orders booleans; "
                            "compare them with == or !=")
    for name in condition.names:
        found.setdefault(name, NUMBER)
    return {n: found[n] for n in condition.names}, problems


def _word(kind: str) -> str:
    return {NUMBER: "number", STRING: "string", BOOLEAN: "boolean"}[kind]


def conjunction(condition: Condition) -> list[tuple] | None:
    """The condition as comparisons that must all hold, ``[(left, symbol, right)]`` with each side a
    name (``ast.Name``) or a literal value, ``not`` pushed into the operators; ``None`` when it needs
    ``or`` (after ``not`` is pushed in), which a conjunction cannot say."""
    out: list[tuple] = []

    def walk(node, negate: bool) -> bool:
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return walk(node.operand, not negate)
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.And) == negate:
                return False  # an `or`, or the negation of an `and`
            return all(walk(v, negate) for v in node.values)
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if negate and len(node.ops) > 1:
                return False  # not (a < b < c) is an or
            for op, a, b in zip(node.ops, operands, operands[1:]):
                op_type = OPERATORS[type(op)][2] if negate else type(op)
                out.append((_side(a), OPERATORS[op_type][1], _side(b)))
            return True
        out.append((_side(node), "==", not negate))  # a bare name: a boolean
        return True

    return out if walk(condition.tree, False) else None


def _side(node: ast.AST):
    return node if isinstance(node, ast.Name) else _literal(node)


# -- binding: what a stage's condition reads -------------------------------------------------------

@dataclass
class ConditionContext:
    """What binding a stage's ``if:`` condition reads of the binding around it."""

    grouped: object  # binding.Grouped
    combined: dict  # stage -> its cells' combined scan
    latest: dict[str, str]  # variable -> the nearest stage above that binds it
    provided: set[str]  # names setup cells, parameters and the kernel provide
    below: list[str]  # the stages after this one
    problems: list[Problem]


def bind_condition(stage: str, text: str, ctx: ConditionContext, inputs: list, outputs: dict,
                    scalars: dict) -> None:
    """Bind the names of ``stage``'s condition: a parameter, or a variable of a stage above (an input
    of ``stage``, so an edge, and a scalar its producer saves as such); report every other name,
    non-scalar sources and comparisons of mismatched kinds."""
    try:
        parsed = parse(text)
    except ConditionError:
        return  # reported with the tag
    cell = ctx.grouped.condition_cells.get(stage, ctx.grouped.first_cell[stage])

    def problem(code: str, message: str) -> None:
        ctx.problems.append(Problem("error", code, f"`if:{parsed}`: {message}", stage=stage, cell=cell))

    params = ctx.grouped.parameter_values
    param_kinds: dict[str, str] = {}
    reads: dict[str, str] = {}  # variable -> producer
    for name in parsed.names:
        if name in params:
            kind = kind_of_value(params[name])
            if kind is None:
                problem("condition-not-scalar", f"parameter '{name}' is {_value_words(params[name])}; a condition "
                                                "compares numbers, strings and booleans")
            else:
                param_kinds[name] = kind
        elif name in ctx.latest:
            producer = ctx.latest[name]
            if ctx.grouped.options[producer].map_var:
                problem("condition-not-scalar", f"'{name}' comes from `map:` stage '{producer}', so it is a list "
                                                "of every item's value; compare a number, string or boolean that a "
                                                "stage computes from it instead")
                continue
            reads[name] = producer
        elif name in ctx.combined[stage].defines:
            problem("condition-name", f"'{name}' is bound by stage '{stage}' itself, but a condition is checked "
                                      "before its stage runs; it reads values that stages above bind, or parameters")
        elif any(name in ctx.combined[n].defines for n in ctx.below):
            later = next(n for n in ctx.below if name in ctx.combined[n].defines)
            problem("condition-name", f"'{name}' is first bound by a later stage, '{later}'; a condition reads "
                                      "values that stages above bind, or parameters")
        elif name in ctx.provided:
            problem("condition-name", f"'{name}' comes from a setup cell, not from a stage above or a parameter; "
                                      "a condition compares values that stages above bind, or parameters")
        else:
            problem("condition-name", f"no stage above binds '{name}' and no parameter has that name")
    compared_as, mismatches = kinds(parsed, param_kinds)
    for text_ in mismatches:
        problem("condition-type", text_)
    for name, producer in reads.items():
        known = scalars[producer].get(name)
        if known and known != compared_as[name]:
            problem("condition-type", f"'{name}' is compared as a {_KIND_WORDS[compared_as[name]]} here and as a "
                                      f"{_KIND_WORDS[known]} by another stage's condition")
            continue
        scalars[producer][name] = compared_as[name]
        outputs[producer].add(name)
        if (name, producer) not in inputs:
            inputs.append((name, producer))
    inputs.sort()


_KIND_WORDS = {NUMBER: "number", STRING: "string", BOOLEAN: "boolean"}


def _value_words(value) -> str:
    return "None by default, so its type is unknown" if value is None else f"a {type(value).__name__}"
