"""Static analysis of cell code: which top-level names a cell defines and which it reads first.

Code goes through IPython's input transformer first (only when it has magics or shell escapes,
which keeps large notebooks fast), so ``%timeit`` and ``!pip`` lines parse. The top level is walked
in execution order, so ``x = x + 1`` reads ``x`` and ``y = 1; print(y)`` does not. Names read
inside functions, lambdas, classes and comprehensions are found with :mod:`symtable`: a function
that reads a global counts as a use of it, since calling it later needs the value.
"""

from __future__ import annotations

import ast
import builtins
import re
import symtable
from dataclasses import dataclass, field

#: Names an IPython kernel provides without any definition.
KERNEL_NAMES = frozenset(dir(builtins)) | {
    "get_ipython", "display", "In", "Out", "exit", "quit", "_", "__", "___",
    "__name__", "__file__", "__builtins__", "__doc__", "__spec__", "__loader__", "__package__",
}

#: Cell magics whose body is Python run in the user namespace, so its names count.
PYTHON_CELL_MAGICS = {"time", "timeit", "capture", "prun", "stage", "debug"}

#: Line magics whose argument is a Python statement run in the user namespace: the names it reads are
#: uses, and (except ``%timeit``, which runs it inside a function) the names it binds are definitions.
#: Each with the options that take a value, which come before the statement.
PYTHON_LINE_MAGICS = {"time": "", "timeit": "nrp", "prun": "lsTD"}

_NEEDS_IPYTHON = re.compile(r"^\s*(%|!)|\?\s*$|^\s*[\w.]+\s*=\s*(%|!)", re.MULTILINE)
_CELL_MAGIC = re.compile(r"^%%(\w+)[^\n]*\n?")


@dataclass
class Scan:
    """The names of one piece of code, in order of first reference."""

    defines: set[str] = field(default_factory=set)
    uses: set[str] = field(default_factory=set)  # read before any binding in this code
    deferred_uses: set[str] = field(default_factory=set)  # read inside functions/classes
    star_import: bool = False
    syntax_error: tuple[int, str] | None = None  # (line, message)
    unsavable: dict[str, str] = field(default_factory=dict)  # name -> what it holds
    calls: dict[str, str] = field(default_factory=dict)  # name -> function whose result it holds (`x = f(...)`)
    generator_functions: set[str] = field(default_factory=set)  # top-level `def`s that `yield`
    function_globals: dict[str, frozenset] = field(default_factory=dict)  # top-level `def` -> globals it reads
    called: list[tuple[str, frozenset]] = field(default_factory=list)  # (function, names bound then), in order


def to_python(source: str) -> str:
    """The Python that IPython would run for ``source`` (magics become function calls)."""
    m = _CELL_MAGIC.match(source)
    if m:
        if m.group(1) in PYTHON_CELL_MAGICS:
            return to_python(source[m.end():])
        return ""  # %%bash, %%html, ...: not Python
    if not _NEEDS_IPYTHON.search(source):
        return source
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def imports_only(source: str) -> str:
    """The import statements of ``source``, as written (a ``parameters`` cell's setup part)."""
    try:
        tree = ast.parse(to_python(source))
    except SyntaxError:
        return ""
    lines = to_python(source).splitlines()
    return "\n".join("\n".join(lines[stmt.lineno - 1:stmt.end_lineno]) for stmt in tree.body
                     if isinstance(stmt, (ast.Import, ast.ImportFrom)))


class _TopLevel(ast.NodeVisitor):
    """Walks module-level code in execution order; nested scopes are left to symtable."""

    def __init__(self, scan: Scan):
        self.scan = scan

    def _use(self, name: str) -> None:
        if name not in self.scan.defines:
            self.scan.uses.add(name)

    def _define(self, name: str) -> None:
        self.scan.defines.add(name)
        self.scan.unsavable.pop(name, None)  # rebound: what it held before no longer matters
        self.scan.calls.pop(name, None)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load) or isinstance(node.ctx, ast.Del):
            self._use(node.id)
        else:
            self._define(node.id)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self.visit(target)
        hint = _unsavable_hint(node.value)
        called = node.value.func.id if isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name) else None
        for target in node.targets:
            if isinstance(target, ast.Name) and hint:
                self.scan.unsavable[target.id] = hint
            elif isinstance(target, ast.Name) and called:
                self.scan.calls[target.id] = called

    def visit_With(self, node) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self.visit(item.optional_vars)
                hint = _unsavable_hint(item.context_expr)
                if hint and isinstance(item.optional_vars, ast.Name):
                    self.scan.unsavable[item.optional_vars.id] = hint  # closed after the block, still a file
        for stmt in node.body:
            self.visit(stmt)

    visit_AsyncWith = visit_With

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
            self.visit(node.target)
        self.visit(node.annotation)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            self._use(node.target.id)
            self._define(node.target.id)
        else:
            self.visit(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self._define(node.target.id)

    def visit_For(self, node) -> None:
        self.visit(node.iter)
        self.visit(node.target)
        for stmt in node.body + node.orelse:
            self.visit(stmt)

    visit_AsyncFor = visit_For

    def visit_Import(self, node) -> None:
        for alias in node.names:
            if alias.name == "*":
                self.scan.star_import = True
            else:
                self._define((alias.asname or alias.name).split(".")[0])

    visit_ImportFrom = visit_Import

    def visit_Global(self, node) -> None:  # `global x` at top level is a no-op
        pass

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name):
            self.scan.called.append((node.func.id, frozenset(self.scan.defines)))
        magic = _line_magic(node)
        code = _magic_statement(*magic) if magic else None
        if code is None:
            self.generic_visit(node)
            return
        try:
            tree = ast.parse(code)
            table = symtable.symtable(code, "<magic>", "exec")
        except SyntaxError:
            return  # IPython reports it when the cell runs
        if magic[0] == "timeit":  # run in a function of its own: it reads names, binds none that last
            inner = Scan(defines=set(self.scan.defines))
            _TopLevel(inner).visit(tree)
            self.scan.uses |= inner.uses
        else:
            for stmt in tree.body:
                self.visit(stmt)
        _nested_global_uses(table, self.scan.deferred_uses, self.scan.defines)

    def _nested(self, node, evaluated_now: list) -> None:
        for child in evaluated_now:
            if child is not None:
                self.visit(child)

    def visit_FunctionDef(self, node) -> None:
        args = node.args
        self._nested(node, node.decorator_list + args.defaults + [d for d in args.kw_defaults if d] + [node.returns])
        self._define(node.name)
        if _yields(node):
            self.scan.generator_functions.add(node.name)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node) -> None:
        self._nested(node, node.decorator_list + node.bases + [k.value for k in node.keywords])
        self._define(node.name)

    def visit_Lambda(self, node) -> None:
        self._nested(node, node.args.defaults + [d for d in node.args.kw_defaults if d])

    def _comprehension(self, node) -> None:
        # Comprehension targets are local to it; everything else it reads is a use now.
        local = {n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
        parts = [g.iter for g in node.generators] + [c for g in node.generators for c in g.ifs]
        parts += [getattr(node, a) for a in ("elt", "key", "value") if hasattr(node, a)]
        for part in parts:
            for n in ast.walk(part):
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id not in local:
                    self._use(n.id)

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension

    def visit_ExceptHandler(self, node) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self._define(node.name)
        for stmt in node.body:
            self.visit(stmt)

    def visit_MatchAs(self, node) -> None:
        if node.pattern is not None:
            self.visit(node.pattern)
        if node.name:
            self._define(node.name)

    def visit_MatchStar(self, node) -> None:
        if node.name:
            self._define(node.name)

    def visit_MatchMapping(self, node) -> None:
        self.generic_visit(node)
        if node.rest:
            self._define(node.rest)


#: Calls whose result is live state that no other process can receive: by the called name, or by
#: ``module.name`` where the bare name is common enough to be a user's own class.
_UNSAVABLE_CALLS = {
    "open": "an open file", "TemporaryFile": "an open file", "NamedTemporaryFile": "an open file",
    "Lock": "a lock", "RLock": "a lock", "Semaphore": "a lock", "BoundedSemaphore": "a lock", "Condition": "a lock",
    "threading.Event": "a lock",
    "connect": "a connection", "socket": "a connection", "create_connection": "a connection",
    "Popen": "a running thread or process", "threading.Thread": "a running thread or process",
    "multiprocessing.Process": "a running thread or process",
}


def _unsavable_hint(value: ast.expr) -> str | None:
    """A reason the value of this expression can never be passed between stages, if obvious."""
    if isinstance(value, ast.GeneratorExp):
        return "a generator"
    if isinstance(value, ast.Call):
        func = value.func
        if isinstance(func, ast.Name):
            return _UNSAVABLE_CALLS.get(func.id)
        if isinstance(func, ast.Attribute):
            owner = func.value.id if isinstance(func.value, ast.Name) else ""
            return _UNSAVABLE_CALLS.get(f"{owner}.{func.attr}") or _UNSAVABLE_CALLS.get(func.attr)
    return None


def _line_magic(node: ast.Call) -> tuple[str, str] | None:
    """``(magic, argument)`` of IPython's ``get_ipython().run_line_magic('time', 'x = f()')``, if ``node`` is one."""
    func = node.func
    if (isinstance(func, ast.Attribute) and func.attr == "run_line_magic" and isinstance(func.value, ast.Call)
            and isinstance(func.value.func, ast.Name) and func.value.func.id == "get_ipython"
            and len(node.args) >= 2 and all(isinstance(a, ast.Constant) and isinstance(a.value, str)
                                             for a in node.args[:2])):
        return node.args[0].value, node.args[1].value
    return None


def _magic_statement(magic: str, argument: str) -> str | None:
    """The Python statement of a ``PYTHON_LINE_MAGICS`` magic's argument, its options removed."""
    if magic not in PYTHON_LINE_MAGICS:
        return None
    with_value, rest = PYTHON_LINE_MAGICS[magic], argument.strip()
    while rest.startswith("-"):
        option, _, rest = rest.partition(" ")
        if option[1:2] in with_value and len(option) == 2:  # `-n 10`: the value is the next word
            rest = rest.lstrip().partition(" ")[2]
        rest = rest.lstrip()
    return rest


def _yields(func: ast.FunctionDef) -> bool:
    """Whether ``func`` itself (not a function nested in it) contains ``yield``: calling it makes a generator."""
    todo = list(func.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Yield, ast.YieldFrom)):
            return True
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            todo.extend(ast.iter_child_nodes(node))
    return False


def _nested_global_uses(table: symtable.SymbolTable, out: set[str], defines: set[str]) -> None:
    for child in table.get_children():
        for sym in child.get_symbols():
            name = sym.get_name()
            if sym.is_global() and sym.is_referenced():
                out.add(name)
            if sym.is_declared_global() and sym.is_assigned():
                defines.add(name)
        _nested_global_uses(child, out, defines)


def scan(source: str) -> Scan:
    """Analyse one cell's source (IPython syntax allowed)."""
    result = Scan()
    try:
        code = to_python(source)
    except SyntaxError as exc:  # IPython transformer can raise on broken magics
        result.syntax_error = (exc.lineno or 1, exc.msg)
        return result
    if not code.strip():
        return result
    try:
        tree = ast.parse(code)
        table = symtable.symtable(code, "<cell>", "exec")
    except SyntaxError as exc:
        result.syntax_error = (exc.lineno or 1, exc.msg or "invalid syntax")
        return result
    _TopLevel(result).visit(tree)
    _nested_global_uses(table, result.deferred_uses, result.defines)
    result.function_globals = {c.get_name(): frozenset(_reads(c)) for c in table.get_children()
                               if c.get_type() == "function"}
    return result


def _reads(table: symtable.SymbolTable) -> set[str]:
    """The global names a function (and what it nests) reads."""
    names = {s.get_name() for s in table.get_symbols() if s.is_global() and s.is_referenced()}
    for child in table.get_children():
        names |= _reads(child)
    return names


@dataclass
class Combined:
    """The names of a sequence of cells run one after the other (a stage)."""

    defines: set[str] = field(default_factory=set)
    uses: set[str] = field(default_factory=set)
    star_import: bool = False
    unsavable: dict[str, str] = field(default_factory=dict)
    calls: dict[str, str] = field(default_factory=dict)
    first_use_cell: dict[str, int] = field(default_factory=dict)
    late_reads: dict[str, tuple[int, str]] = field(default_factory=dict)  # name -> (cell, function) called too early

    def unsavable_hint(self, name: str, generator_functions: set[str]) -> str | None:
        """What ``name`` holds when these cells end, if its code shows it can never travel."""
        if name in self.unsavable:
            return self.unsavable[name]
        return "a generator" if self.calls.get(name) in generator_functions else None


def combine(scans: list[tuple[int, Scan]]) -> Combined:
    """Names used and defined by cells run in order; a use after an earlier cell's define is local."""
    out = Combined()
    deferred: dict[str, int] = {}
    helpers: dict[str, frozenset] = {}
    for cell, s in scans:
        helpers.update(s.function_globals)
        for function, bound in s.called:  # a call runs the function now: what it reads must exist already
            for name in helpers.get(function, ()):
                if name not in out.defines and name not in bound:
                    out.late_reads.setdefault(name, (cell, function))
        for name in s.uses - out.defines:
            out.uses.add(name)
            out.first_use_cell.setdefault(name, cell)
        for name in s.deferred_uses:
            deferred.setdefault(name, cell)
        for name in s.defines:  # rebound by a later cell: what an earlier cell left no longer matters
            out.unsavable.pop(name, None)
            out.calls.pop(name, None)
        out.defines |= s.defines
        out.star_import |= s.star_import
        out.unsavable.update(s.unsavable)
        out.calls.update(s.calls)
    # A function body may read a global the stage binds later; only names the stage never
    # binds are uses of the function's globals.
    for name, cell in deferred.items():
        if name not in out.defines:
            out.uses.add(name)
            out.first_use_cell.setdefault(name, cell)
    out.uses -= KERNEL_NAMES
    out.late_reads = {n: v for n, v in out.late_reads.items() if n in out.defines}  # bound by a later cell
    return out
