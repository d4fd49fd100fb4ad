"""Turn executed cells into an index of top-level bindings.

Capture copies source text from the cells, so it needs to know, for every
global name, which statement last bound it and in which cell. Only statements
that run in the module scope count: bodies of functions and classes do not bind
globals (except through ``global``).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ._types import CellRecord

__all__ = ["Binding", "Cell", "ImportSpec", "Index", "history_from_shell", "parse_cell"]

# Cell magics whose body runs as ordinary Python in the user namespace.
_PYTHON_CELL_MAGICS = frozenset({"easytensor_model", "time", "capture"})

BindingKind = Literal["import", "def", "lambda", "other"]


@dataclass(frozen=True)
class ImportSpec:
    """One imported name, enough to re-emit it and to check it against the live value."""

    module: str
    attr: str | None
    asname: str | None

    @property
    def bound_name(self) -> str:
        if self.asname:
            return self.asname
        if self.attr is not None:
            return self.attr
        return self.module.partition(".")[0]

    def render(self) -> str:
        if self.attr is None:
            if self.asname and self.asname != self.module:
                return f"import {self.module} as {self.asname}"
            return f"import {self.module}"
        if self.asname and self.asname != self.attr:
            return f"from {self.module} import {self.attr} as {self.asname}"
        return f"from {self.module} import {self.attr}"

    def resolves_to(self, value: object) -> bool:
        """Whether running this import now would bind exactly ``value``.

        Checked against ``sys.modules`` rather than by importing, so a line that
        failed in the notebook (say ``import torch.tensor``) never matches.
        """
        if self.attr is None:
            if sys.modules.get(self.module) is None:
                return False
            target = self.module if self.asname else self.module.partition(".")[0]
            return sys.modules.get(target) is value
        parent = sys.modules.get(self.module)
        if parent is None:
            return False
        if getattr(parent, self.attr, _MISSING) is value:
            return True
        return sys.modules.get(f"{self.module}.{self.attr}") is value


_MISSING = object()


@dataclass(frozen=True)
class Cell:
    """A history cell parsed as Python; ``tree`` is None when it is not valid Python."""

    position: int
    record: CellRecord
    source: str
    tree: ast.Module | None

    @property
    def label(self) -> str:
        count = self.record.execution_count
        return f"cell [{count}]" if count is not None else "the current cell"


@dataclass(frozen=True)
class Binding:
    name: str
    cell: Cell
    node: ast.stmt | None
    kind: BindingKind
    import_spec: ImportSpec | None = None

    @property
    def order(self) -> tuple[int, int]:
        line = self.node.lineno if self.node is not None else 0
        return (self.cell.position, line)

    def segment(self) -> str:
        """Source text of the binding statement, dedented, decorators included."""
        assert self.node is not None
        node = self.node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            lines = self.cell.source.splitlines()
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            end = node.end_lineno or node.lineno
            chunk = lines[first - 1 : end]
            indent = chunk[0][: len(chunk[0]) - len(chunk[0].lstrip())]
            return "\n".join(line.removeprefix(indent) for line in chunk)
        text = ast.get_source_segment(self.cell.source, node)
        assert text is not None
        return text


def _transform(source: str) -> str:
    from IPython.core.inputtransformer2 import TransformerManager

    manager: Any = TransformerManager()  # type: ignore[no-untyped-call]
    return str(manager.transform_cell(source))


def _magic_body(tree: ast.Module) -> str | None:
    """The body of ``%%magic`` cells that run Python, as IPython rewrites them."""
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
        return None
    call = tree.body[0].value
    if not (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "run_cell_magic"
        and isinstance(call.func.value, ast.Call)
        and isinstance(call.func.value.func, ast.Name)
        and call.func.value.func.id == "get_ipython"
        and len(call.args) == 3
    ):
        return None
    name, _line, body = call.args
    if not (isinstance(name, ast.Constant) and isinstance(body, ast.Constant)):
        return None
    if name.value not in _PYTHON_CELL_MAGICS or not isinstance(body.value, str):
        return None
    return body.value


def parse_cell(record: CellRecord, position: int) -> Cell:
    """Parse a cell the way the kernel ran it: magics expanded, Python cell magics unwrapped."""
    source = record.source
    for _ in range(4):
        try:
            tree = ast.parse(source)
        except SyntaxError:
            transformed = _transform(source)
            if transformed == source:
                return Cell(position, record, source, None)
            source = transformed
            continue
        body = _magic_body(tree)
        if body is None:
            return Cell(position, record, source, tree)
        source = body
    return Cell(position, record, source, None)


def _target_names(target: ast.expr) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Tuple | ast.List):
        for elt in target.elts:
            yield from _target_names(elt)
    elif isinstance(target, ast.Starred):
        yield from _target_names(target.value)


class _Collector(ast.NodeVisitor):
    """Records module-scope bindings; does not enter function or class bodies."""

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.found: list[Binding] = []
        self.star_modules: list[str] = []
        self.future: set[str] = set()
        self._stmt: ast.stmt | None = None

    def _bind(self, name: str, kind: BindingKind = "other", spec: ImportSpec | None = None) -> None:
        self.found.append(Binding(name, self.cell, self._stmt, kind, spec))

    def visit(self, node: ast.AST) -> Any:
        if isinstance(node, ast.stmt):
            previous, self._stmt = self._stmt, node
            try:
                return super().visit(node)
            finally:
                self._stmt = previous
        return super().visit(node)

    def _visit_def(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        self._bind(node.name, "def")
        for inner in ast.walk(node):
            if isinstance(inner, ast.Global):
                for name in inner.names:
                    self._bind(name)

    visit_FunctionDef = _visit_def
    visit_AsyncFunctionDef = _visit_def
    visit_ClassDef = _visit_def

    def visit_Lambda(self, node: ast.Lambda) -> None:
        return None

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        is_lambda = isinstance(node.value, ast.Lambda) and len(node.targets) == 1
        for target in node.targets:
            kind: BindingKind = "lambda" if is_lambda and isinstance(target, ast.Name) else "other"
            for name in _target_names(target):
                self._bind(name, kind)
            self.visit(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is None:
            return
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            kind: BindingKind = "lambda" if isinstance(node.value, ast.Lambda) else "other"
            self._bind(node.target.id, kind)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        for name in _target_names(node.target):
            self._bind(name)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        for name in _target_names(node.target):
            self._bind(name)
        self.generic_visit(node)

    visit_AsyncFor = visit_For

    def visit_withitem(self, node: ast.withitem) -> None:
        if node.optional_vars is not None:
            for name in _target_names(node.optional_vars):
                self._bind(name)
        self.generic_visit(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self._bind(node.name)
        self.generic_visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self._bind(node.target.id)
        self.visit(node.value)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.name:
            self._bind(node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self._bind(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self._bind(node.rest)
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            spec = ImportSpec(alias.name, None, alias.asname)
            self._bind(spec.bound_name, "import", spec)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module == "__future__":
            self.future.update(alias.name for alias in node.names)
            return
        if node.level or node.module is None:
            for alias in node.names:
                if alias.name != "*":
                    self._bind(alias.asname or alias.name)
            return
        for alias in node.names:
            if alias.name == "*":
                self.star_modules.append(node.module)
                continue
            spec = ImportSpec(node.module, alias.name, alias.asname)
            self._bind(spec.bound_name, "import", spec)


class Index:
    """Every module-scope binding across the cells, in execution order."""

    def __init__(self, cells: Sequence[Cell]) -> None:
        self.cells = list(cells)
        self._by_name: dict[str, list[Binding]] = {}
        self.star_imports: list[tuple[str, Cell]] = []
        self.future_annotations = False
        """IPython keeps ``from __future__`` flags for the rest of the session."""
        for cell in self.cells:
            if cell.tree is None:
                continue
            collector = _Collector(cell)
            for stmt in cell.tree.body:
                collector.visit(stmt)
            for binding in collector.found:
                self._by_name.setdefault(binding.name, []).append(binding)
            self.star_imports.extend((module, cell) for module in collector.star_modules)
            self.future_annotations |= "annotations" in collector.future

    def bindings(self, name: str) -> list[Binding]:
        return self._by_name.get(name, [])

    def bindings_of_kind(self, kind: BindingKind) -> list[Binding]:
        found = [b for group in self._by_name.values() for b in group if b.kind == kind]
        return sorted(found, key=lambda b: b.order)

    def latest(self, name: str, kind: BindingKind | None = None) -> Binding | None:
        for binding in reversed(self.bindings(name)):
            if kind is None or binding.kind == kind:
                return binding
        return None


def history_from_shell(shell: Any, cell_ids: Mapping[int, str] | None = None) -> list[CellRecord]:
    """Executed cells of an IPython shell, oldest first.

    IPython keeps the transformed source of cell N at ``input_hist_parsed[N]``;
    cell ids are not kept there, so a caller that tracked them (see
    ``ConstructionRecorder.cell_ids``) can pass them in.
    """
    ids = cell_ids or {}
    parsed: Sequence[str] = shell.history_manager.input_hist_parsed
    return [
        CellRecord(source=source, execution_count=count, cell_id=ids.get(count))
        for count, source in enumerate(parsed)
        if count > 0 and source.strip()
    ]
