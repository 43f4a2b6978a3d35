"""Circuit-breaker rule conditions: tokenizer, parser, type checker and evaluator.

A condition is a small boolean expression over a fixed vocabulary of metric
names (``NAMES``), e.g. ``errorRate > 0.05 and not (incidents.critical >= 1)``.
User text never reaches eval/exec/compile/ast: it is tokenized and parsed by
hand into frozen dataclasses, type checked, and evaluated by walking the tree.

Grammar, lowest precedence first::

    condition  := or_expr EOF
    or_expr    := and_expr (("or" | "||") and_expr)*
    and_expr   := comparison (("and" | "&&") comparison)*
    comparison := unary (CMP unary)?        CMP: > >= < <= == === != !==
    unary      := ("not" | "!") unary | primary
    primary    := NUMBER | STRING | true | false | null | NAME | "(" or_expr ")"

``not`` binds tighter than comparisons (like ``!`` in JavaScript), so write
``not (errorRate > 0.05)``; ``not errorRate > 0.05`` is refused with that hint.
``===``/``!==`` mean ``==``/``!=``. Comparisons do not chain.

Unknown values: a rate is unknown (None) when its denominator is zero; NaN and
names a scope does not supply count as unknown too. Evaluation uses Kleene
three-valued logic: a comparison with an unknown number is unknown; ``not
unknown`` is unknown; ``false and unknown`` is false; ``true or unknown`` is
true; otherwise unknown propagates. ``Condition.evaluate`` returns True only for
a definite True, so an unknown rate never trips a breaker, negated or not.
``name == null`` / ``name != null`` test whether a value is known (never unknown).

Severities: ``incident.severity == "x"`` is true when any incident in the
window has severity x; ``incident.severity != "x"`` is true when there is at
least one incident and none has severity x.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import NamedTuple, Protocol

__all__ = ["MAX_DEPTH", "MAX_LENGTH", "NAMES", "SEVERITIES", "And", "Compare", "Condition", "Literal",
           "MappingScope", "Name", "NameInfo", "Node", "Not", "Or", "RuleError", "Scope", "explain",
           "format_window", "parse_condition", "parse_window"]

MAX_LENGTH = 1000  # characters in a condition
MAX_DEPTH = 50     # nested parentheses and nots
SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low")  # = engine.domain.SEVERITIES


class RuleError(ValueError):
    """Invalid condition or window text; ``position`` is the 0-based column."""

    def __init__(self, message: str, position: int, hint: str | None = None) -> None:
        super().__init__(message, position, hint)
        self.message, self.position, self.hint = message, position, hint

    def __str__(self) -> str:
        return f"column {self.position}: {self.message}" + (f" ({self.hint})" if self.hint else "")


# --- vocabulary ---------------------------------------------------------------

@dataclass(frozen=True)
class NameInfo:
    type: str                    # 'number' | 'string'
    kind: str                    # 'rate' | 'count' | 'severity'
    doc: str
    alias_of: str | None = None  # the canonical name this one stands for


def _vocabulary() -> dict[str, NameInfo]:
    counts = {"total": "commands recorded", "proposed": "commands proposed",
              "approved": "commands approved", "rejected": "commands rejected",
              "succeeded": "commands that succeeded", "failed": "commands that failed",
              "rolledBack": "commands rolled back"}
    names: dict[str, NameInfo] = {}
    for prefix, where in (("", "in the window"),
                          ("autonomous.", "in the window, autonomous commands only"),
                          ("commandType.", "in the window, for the command type being checked")):
        for rate in ("successRate", "approvalRate", "rollbackRate", "errorRate"):
            names[prefix + rate] = NameInfo("number", "rate", f"AutonomyMetrics {rate} {where}; "
                                            "unknown when its denominator is 0")
        for count, doc in counts.items():
            names[prefix + count] = NameInfo("number", "count", f"{doc} {where}")
    names["commandType.failures"] = NameInfo("number", "count", "alias of commandType.failed",
                                             alias_of="commandType.failed")
    names["commandType.consecutiveFailures"] = NameInfo(
        "number", "count", "failed or rolled-back commands of the type since its last success in the window "
        "(all of them when none succeeded in it): seed 002's consecutive failures")
    names["incident.severity"] = NameInfo("string", "severity", "severity of any incident in the window: "
                                          + ", ".join(SEVERITIES))
    for name, doc in (("incidents.total", "incidents in the window"),
                      ("incidents.critical", "critical incidents in the window"),
                      ("incidents.fromAutonomousActions", "incidents in the window caused by autonomous actions"),
                      ("safety.constraintViolations", "safety constraint violations in the window"),
                      ("safety.emergencyAborts", "emergency aborts in the window"),
                      ("safety.safetyGateTriggers", "safety gate triggers in the window")):
        names[name] = NameInfo("number", "count", doc)
    return names


NAMES: dict[str, NameInfo] = _vocabulary()


# --- syntax tree (every node carries the column it starts at, or its operator's) --

@dataclass(frozen=True)
class Literal:
    value: float | int | str | bool | None
    raw: str  # canonical spelling, for display
    pos: int


@dataclass(frozen=True)
class Name:
    name: str     # canonical (aliases resolved)
    spelled: str  # as written
    pos: int


@dataclass(frozen=True)
class Compare:
    op: str  # > >= < <= == !=
    left: Node
    right: Node
    pos: int  # column of the operator


@dataclass(frozen=True)
class Not:
    operand: Node
    pos: int


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]
    pos: int


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]
    pos: int


Node = Literal | Name | Compare | Not | And | Or


# --- tokenizer ----------------------------------------------------------------

class _Token(NamedTuple):
    kind: str  # num str name cmp and or not ( ) true false null eof
    text: str
    pos: int
    value: float | int | str | None = None  # of a num (int or float) or str token


_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_OPERATORS = ("===", "!==", "==", "!=", ">=", "<=", "&&", "||", ">", "<", "!", "(", ")")
_OP_KINDS = {"&&": "and", "||": "or", "!": "not", "(": "(", ")": ")"}  # the rest are "cmp"
_KEYWORDS = ("and", "or", "not", "true", "false", "null")
_STRAY = {"=": "use == to compare", "&": "use && or and", "|": "use || or or",
          **dict.fromkeys("+-*/%", "arithmetic is not supported")}


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _string(text: str, start: int) -> tuple[_Token, int]:
    quote, i = text[start], start + 1
    out: list[str] = []
    while i < len(text):
        c = text[i]
        if c == quote:
            return _Token("str", text[start:i + 1], start, "".join(out)), i + 1
        if c == "\\" and i + 1 < len(text):
            if text[i + 1] not in "\\\"'":
                raise RuleError(f"unsupported escape '\\{text[i + 1]}'", i, "only \\\", \\' and \\\\ are escapes")
            c, i = text[i + 1], i + 1
        out.append(c)
        i += 1
    raise RuleError("unterminated string", start, f"close it with {quote}")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c in "\"'":
            tok, i = _string(text, i)
        elif m := _NUMBER.match(text, i):
            raw, i = m.group(), m.end()
            if i < n and (text[i].isalnum() or text[i] in "._"):
                raise RuleError(f"malformed number {text[m.start():i + 1]!r}", i, "numbers look like 3, 0.05 or 1e-3")
            tok = _Token("num", raw, m.start(), float(raw) if any(ch in raw for ch in ".eE") else int(raw))
        elif m := _IDENT.match(text, i):
            word, i = m.group(), m.end()
            if i < n and text[i] == ".":
                raise RuleError(f"incomplete name {word + '.'!r}", i, "names look like errorRate or incidents.critical")
            tok = _Token(word if word in _KEYWORDS else "name", word, m.start())
        else:
            op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
            if op is None:
                raise RuleError(f"unexpected character {c!r}", i, _STRAY.get(c))
            tok, i = _Token(_OP_KINDS.get(op, "cmp"), op, i), i + len(op)
        tokens.append(tok)
    tokens.append(_Token("eof", "", n))
    return tokens


# --- parser -------------------------------------------------------------------

def _name_hint(word: str) -> str:
    if word.lower() in _KEYWORDS:
        return f"keywords are lowercase: {word.lower()}"
    close = difflib.get_close_matches(word, list(NAMES), n=3, cutoff=0.6)
    if close:
        return f"did you mean {' or '.join(close)}?"
    prefix = word.rpartition(".")[0]
    under = [n for n in NAMES if prefix and n.startswith(prefix + ".")]
    if under:
        return f"{prefix} names: " + ", ".join(sorted(under))
    return ("known names include errorRate, failed, autonomous.errorRate, commandType.failures, "
            "incident.severity, incidents.critical, safety.emergencyAborts")


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens, self.i, self.depth = _tokenize(text), 0, 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def advance(self) -> _Token:
        tok = self.tokens[self.i]
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return tok

    def unexpected(self, tok: _Token, hint: str | None) -> RuleError:
        if tok.kind == "eof":
            return RuleError("unexpected end of input", tok.pos, hint)
        what = {"name": f"name {tok.text!r}", "num": f"number {tok.text}", "str": f"string {tok.text}"}
        return RuleError(f"unexpected {what.get(tok.kind, repr(tok.text))}", tok.pos, hint)

    def nest(self, tok: _Token, delta: int) -> None:
        self.depth += delta
        if self.depth > MAX_DEPTH:
            raise RuleError("condition is nested too deeply", tok.pos,
                            f"use at most {MAX_DEPTH} levels of parentheses and not")

    def parse(self) -> Node:
        node = self.or_expr()
        if self.tok.kind != "eof":
            hint = "this ')' has no matching '('" if self.tok.kind == ")" else "combine conditions with and / or"
            raise self.unexpected(self.tok, hint)
        return node

    def or_expr(self) -> Node:
        return self.chain("or", Or, self.and_expr)

    def and_expr(self) -> Node:
        return self.chain("and", And, self.comparison)

    def chain(self, kind: str, cls: type[And] | type[Or], operand: Callable[[], Node]) -> Node:
        start, operands = self.tok.pos, [operand()]
        while self.tok.kind == kind:
            self.advance()
            operands.append(operand())
        return operands[0] if len(operands) == 1 else cls(tuple(operands), start)

    def comparison(self) -> Node:
        left = self.unary()
        if self.tok.kind != "cmp":
            return left
        op = self.advance()
        right = self.unary()
        if self.tok.kind == "cmp":
            op2 = self.advance()
            hint = "combine comparisons with and, e.g. 0 < errorRate and errorRate < 0.1"
            try:
                a, b, c = _atom(left), _atom(right), _atom(self.unary())
                hint = f"use and: {a} {op.text} {b} and {b} {op2.text} {c}"
            except RuleError:
                pass
            raise RuleError("comparisons cannot be chained", op2.pos, hint)
        return Compare({"===": "==", "!==": "!="}.get(op.text, op.text), left, right, op.pos)

    def unary(self) -> Node:
        tok = self.tok
        if tok.kind != "not":
            return self.primary()
        self.advance()
        self.nest(tok, +1)
        operand = self.unary()
        self.nest(tok, -1)
        return Not(operand, tok.pos)

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind == "(":
            self.advance()
            self.nest(tok, +1)
            node = self.or_expr()
            if self.tok.kind != ")":
                raise self.unexpected(self.tok, f"missing ')' for the '(' at column {tok.pos}")
            self.advance()
            self.nest(tok, -1)
            return node
        if tok.kind == "name":
            info = NAMES.get(tok.text)
            if info is None:
                raise RuleError(f"unknown name {tok.text!r}", tok.pos, _name_hint(tok.text))
            self.advance()
            return Name(info.alias_of or tok.text, tok.text, tok.pos)
        if tok.kind in ("num", "str"):
            self.advance()
            return Literal(tok.value, _quote(tok.value) if isinstance(tok.value, str) else tok.text, tok.pos)
        if tok.kind in ("true", "false", "null"):
            self.advance()
            return Literal({"true": True, "false": False, "null": None}[tok.kind], tok.kind, tok.pos)
        after = f" after {self.tokens[self.i - 1].text!r}" if self.i else ""
        raise self.unexpected(tok, f"expected a name, number or string{after}")


# --- type checking ------------------------------------------------------------

def _start(node: Node) -> int:
    match node:
        case Compare(left=left):
            return _start(left)
    return node.pos


def _example(node: Node) -> str:
    match node:
        case Name(name=name, spelled=spelled) if NAMES[name].type == "string":
            return f'e.g. {spelled} == "critical"'
        case Name(spelled=spelled):
            return f"e.g. {spelled} > 0.05"
    return "e.g. errorRate > 0.05"


def _type(node: Node) -> str:
    """'number', 'string', 'bool' or 'null'; raises RuleError where types do not fit."""
    match node:
        case Literal(value=None):
            return "null"
        case Literal(value=bool()):
            return "bool"
        case Literal(value=str()):
            return "string"
        case Literal():
            return "number"
        case Name(name=name):
            return NAMES[name].type
        case Compare():
            _check_compare(node)
        case Not(operand=operand, pos=pos):
            if _type(operand) != "bool":
                raise RuleError("'not' needs a comparison or boolean expression", pos, "e.g. not (errorRate > 0.05)")
        case And(operands=operands):
            _check_operands("and", operands)
        case Or(operands=operands):
            _check_operands("or", operands)
    return "bool"


def _check_operands(word: str, operands: tuple[Node, ...]) -> None:
    for sub in operands:
        if (t := _type(sub)) != "bool":
            raise RuleError(f"'{word}' combines comparisons, but {_atom(sub)} is a {t}", _start(sub), _example(sub))


def _check_compare(node: Compare) -> None:
    left, right, op = node.left, node.right, node.op
    if isinstance(left, Not) and _type(left.operand) != "bool":
        raise RuleError("'not' needs a comparison or boolean expression", left.pos,
                        f"not binds tighter than comparisons: write not ({_atom(left.operand)} {op} {_atom(right)})")
    lt = "bool" if isinstance(left, Not) else _type(left)
    rt = _type(right)
    for side, t in ((left, lt), (right, rt)):
        if t == "bool":
            raise RuleError("cannot compare a boolean", _start(side), "combine conditions with and, or and not")
    if isinstance(left, Name):
        name, other, ntype, otype = left, right, lt, rt
    elif isinstance(right, Name):
        name, other, ntype, otype = right, left, rt, lt
    else:
        raise RuleError("comparison needs a name on one side", node.pos, "e.g. errorRate > 0.05")
    severities = "severity must be one of " + ", ".join(map(_quote, SEVERITIES))
    if otype == "null":
        if ntype != "number":
            raise RuleError(f"{name.spelled} cannot be null", other.pos, "use incidents.total == 0 for no incidents")
        if op not in ("==", "!="):
            raise RuleError(f"cannot use {op} with null", node.pos,
                            f"null only works with == and !=, e.g. {name.spelled} == null")
    elif ntype != otype:
        hint = severities if ntype == "string" else f"compare {name.spelled} with a number, e.g. {name.spelled} > 0.05"
        raise RuleError(f"type mismatch: {name.spelled} is a {ntype} but {_atom(other)} is a {otype}",
                        right.pos if isinstance(other, Name) else _start(other), hint)
    elif ntype == "string":
        if op not in ("==", "!="):
            raise RuleError(f"cannot order strings with {op}", node.pos, "strings can only be compared with == or !=")
        match other:
            case Name(pos=pos):
                raise RuleError("cannot compare two severities", pos, severities)
            case Literal(value=str() as severity, raw=raw, pos=pos) if severity not in SEVERITIES:
                raise RuleError(f"unknown severity {raw}", pos, severities)


# --- evaluation ---------------------------------------------------------------

class Scope(Protocol):
    def value(self, name: str) -> float | int | str | None: ...  # None: unknown
    def severities(self) -> frozenset[str]: ...                  # of incidents in the window


class MappingScope:
    """A Scope backed by a mapping; absent names are unknown, alias names are accepted as keys."""

    def __init__(self, values: Mapping[str, float | int | None], severities: Iterable[str] = ()) -> None:
        self._values = {(NAMES[k].alias_of if k in NAMES else None) or k: v for k, v in values.items()}
        self._severities = frozenset(severities)

    def value(self, name: str) -> float | int | str | None:
        return self._values.get(name)

    def severities(self) -> frozenset[str]:
        return self._severities


_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
        "==": operator.eq, "!=": operator.ne}


def _number(node: Node, scope: Scope) -> float | int | None:
    match node:
        case Name():
            v = scope.value(node.name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise TypeError(f"scope value for {node.name!r} must be a number or None, not {type(v).__name__}")
            return None if isinstance(v, float) and math.isnan(v) else v
        case Literal() if not isinstance(node.value, str):  # a number or null, after type checking
            return node.value
    raise AssertionError(f"not a number operand: {node!r}")  # type checking refuses it


def _compare(node: Compare, scope: Scope) -> bool | None:
    # after type checking: a severity name against a string; a number name against null, a number or a name
    name, other = (node.left, node.right) if isinstance(node.left, Name) else (node.right, node.left)
    match other:
        case Literal() if isinstance(other.value, str):
            present = frozenset(scope.severities())
            if node.op == "==":
                return other.value in present
            return bool(present) and other.value not in present
        case Literal() if other.value is None:
            return (_number(name, scope) is None) == (node.op == "==")
    a, b = _number(node.left, scope), _number(node.right, scope)
    return None if a is None or b is None else _OPS[node.op](a, b)


def _eval(node: Node, scope: Scope) -> bool | None:
    match node:
        case Compare():
            return _compare(node, scope)
        case And():
            return _kleene(node.operands, scope, decisive=False)
        case Or():
            return _kleene(node.operands, scope, decisive=True)
        case Not():
            v = _eval(node.operand, scope)
            return None if v is None else not v
        case Literal() if isinstance(node.value, bool):  # true or false
            return node.value
    raise AssertionError(f"not a boolean expression: {node!r}")  # type checking refuses it


def _kleene(operands: tuple[Node, ...], scope: Scope, *, decisive: bool) -> bool | None:
    """``and`` (decisive False) or ``or`` (decisive True): an operand with the decisive value settles it,
    else an unknown operand makes it unknown."""
    result: bool | None = not decisive
    for sub in operands:
        v = _eval(sub, scope)
        if v is decisive:
            return decisive
        if v is None:
            result = None
    return result


def _names(node: Node) -> Iterator[str]:
    match node:
        case Name(name=name):
            yield name
        case Compare(left=left, right=right):
            yield from _names(left)
            yield from _names(right)
        case Not(operand=operand):
            yield from _names(operand)
        case And(operands=operands) | Or(operands=operands):
            for sub in operands:
                yield from _names(sub)


@dataclass(frozen=True)
class Condition:
    text: str
    ast: Node
    names: frozenset[str]  # canonical names used (commandType.failures -> commandType.failed)

    def uses_command_type(self) -> bool:
        return any(n.startswith("commandType.") for n in self.names)

    def uses_incident_severity(self) -> bool:
        return "incident.severity" in self.names

    def rate_names(self) -> frozenset[str]:
        return frozenset(n for n in self.names if NAMES[n].kind == "rate")

    def evaluate(self, scope: Scope) -> bool:
        """True only when the condition is definitely true (unknown does not trip)."""
        return _eval(self.ast, scope) is True


def parse_condition(text: str) -> Condition:
    """Parse and type check a condition; raises RuleError on any problem."""
    if not isinstance(text, str):
        raise RuleError("condition must be text", 0, "e.g. errorRate > 0.05")
    if len(text) > MAX_LENGTH:
        raise RuleError(f"condition too long ({len(text)} characters)", MAX_LENGTH,
                        f"conditions are limited to {MAX_LENGTH} characters")
    if not text.strip():
        raise RuleError("empty condition", 0, "write a condition such as errorRate > 0.05")
    ast = _Parser(text).parse()
    if _type(ast) != "bool":
        raise RuleError("condition must be a comparison or boolean expression", _start(ast), _example(ast))
    return Condition(text, ast, frozenset(_names(ast)))


# --- display ------------------------------------------------------------------

def _atom(node: Node) -> str:
    """Render an operand of a comparison or not, parenthesised unless it binds tighter."""
    text = _render(node)
    return f"({text})" if isinstance(node, (Compare, And, Or)) else text


def _render(node: Node) -> str:
    match node:
        case Literal(raw=raw):
            return raw
        case Name(spelled=spelled):
            return spelled
        case Compare(op=op, left=left, right=right):
            return f"{_atom(left)} {op} {_atom(right)}"
        case Not(operand=operand):
            return f"not {_atom(operand)}"
        case And(operands=operands):
            return " and ".join(f"({_render(s)})" if isinstance(s, Or) else _render(s) for s in operands)
        case Or(operands=operands):
            return " or ".join(_render(s) for s in operands)


def explain(condition: Condition | str) -> str:
    """Canonical one-line rendering, e.g. ``errorRate > 0.05``; it parses back to the same meaning."""
    if isinstance(condition, str):
        condition = parse_condition(condition)
    return _render(condition.ast)


# --- windows ------------------------------------------------------------------

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}  # largest first
_MAX_SECONDS = timedelta.max // timedelta(seconds=1)
_WINDOW_HINT = "use a whole number followed by s, m, h or d, e.g. 5m"


def parse_window(text: str) -> timedelta:
    """Parse '30s', '5m', '1h', '1d' or '2w' into a timedelta; raises RuleError."""
    if not isinstance(text, str):
        raise RuleError("window must be text", 0, _WINDOW_HINT)
    body, start = text.strip(), len(text) - len(text.lstrip())
    if not body:
        raise RuleError("empty window", 0, _WINDOW_HINT)
    digits = re.match(r"[0-9]*", body).group()  # type: ignore[union-attr]  # [0-9]* matches every string
    i, unit = len(digits), body[len(digits):len(digits) + 1]
    if body[0] == "-":
        raise RuleError("window must be positive", start, _WINDOW_HINT)
    if not digits:
        what = "window is missing a number" if body[0].isalpha() else f"unexpected character {body[0]!r}"
        raise RuleError(what, start, _WINDOW_HINT)
    if not unit:
        raise RuleError("window is missing a unit", start + i, _WINDOW_HINT)
    if unit == ".":
        raise RuleError("window must be a whole number", start + i, "use a smaller unit, e.g. 90m rather than 1.5h")
    if unit not in _UNITS:
        raise RuleError(f"unknown unit {unit!r}", start + i, _WINDOW_HINT)
    if i + 1 < len(body):
        raise RuleError(f"unexpected {body[i + 1:]!r} after the unit", start + i + 1,
                        "use one unit, e.g. 90m rather than 1h30m")
    significant = digits.lstrip("0")
    if not significant:
        raise RuleError("window must be positive", start, _WINDOW_HINT)
    if len(significant) > 15 or int(significant) * _UNITS[unit] > _MAX_SECONDS:
        raise RuleError("window is too long", start, _WINDOW_HINT)
    return timedelta(seconds=int(significant) * _UNITS[unit])


def format_window(td: timedelta) -> str:
    """Canonical text for a window: the largest unit that divides it exactly ('90s', '5m', '1h')."""
    if td <= timedelta(0) or td % timedelta(seconds=1):
        raise ValueError(f"a window must be a positive whole number of seconds, not {td!r}")
    seconds = td // timedelta(seconds=1)
    unit = next(u for u, size in _UNITS.items() if seconds % size == 0)
    return f"{seconds // _UNITS[unit]}{unit}"
