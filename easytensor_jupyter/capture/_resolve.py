"""Work out, name by name, what ``model.py`` needs and how to write each piece.

Code (functions, classes, top-level lambdas) is copied from the cells that last
defined it; data is taken from the live namespace, because the kernel's value is
the one the trained model saw. Anything that is neither code we can copy nor
data we can write is refused: the endpoint must not depend on pickled objects.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import sys
import types
import typing
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from easytensor_jupyter.state import StateWriter, Unencodable

from ._history import Binding, Cell, ImportSpec, Index
from ._local import local_top_level
from ._refusals import Refusals
from ._scopes import global_names
from ._types import CaptureError
from ._values import (
    LITERAL_LIMIT,
    NotLiteralError,
    TooBigError,
    importable_as,
    local_module_file,
    render_literal,
    tensor_constant,
)

if TYPE_CHECKING:
    import torch

__all__ = ["Piece", "Resolver"]

PieceKind = Literal["import", "constant", "tensor", "state", "code"]

_NOT_BUILTINS = frozenset({"display", "get_ipython", "__IPYTHON__", "dreload"})
_BUILTINS = frozenset(dir(builtins)) - _NOT_BUILTINS
_MODULE_DUNDERS = frozenset(
    {"__name__", "__doc__", "__file__", "__builtins__", "__spec__", "__loader__", "__package__"}
)
_MISSING = object()


@dataclass
class Piece:
    """One top-level item of ``model.py``."""

    name: str
    kind: PieceKind
    text: str = ""
    imports: list[ImportSpec] = field(default_factory=list)
    deps: frozenset[str] = frozenset()
    order: tuple[int, int] = (sys.maxsize, 0)
    cells: tuple[Cell, ...] = ()
    tensor: torch.Tensor | None = None
    modules: frozenset[str] = frozenset()
    """Standard modules its text uses as ``_et_<module>``."""


def _is_lambda(value: object) -> bool:
    return isinstance(value, types.FunctionType) and value.__name__ == "<lambda>"


def _is_code_or_module(value: object) -> bool:
    """Classes, modules and functions; an object that merely has ``__call__`` is data."""
    code = (
        type,
        types.ModuleType,
        types.FunctionType,
        types.BuiltinFunctionType,
        types.MethodType,
        types.MethodWrapperType,
        types.WrapperDescriptorType,
    )
    return isinstance(value, code) or (callable(value) and hasattr(value, "__wrapped__"))


def _is_type_alias(value: object) -> bool:
    """``Vector = list[float]`` and friends: only their source can be written out."""
    if isinstance(value, types.GenericAlias | types.UnionType | typing.TypeVar):
        return True
    return type(value).__module__ in ("typing", "typing_extensions") and not isinstance(value, type)


def _is_main_code(value: object) -> bool:
    """Functions and classes written in the notebook (instances are not code)."""
    if getattr(value, "__module__", None) != "__main__":
        return False
    if isinstance(value, type | types.FunctionType):
        return True
    return hasattr(value, "__wrapped__") and callable(value)


class Resolver:
    """Resolves the global names of the model class, transitively."""

    def __init__(
        self, index: Index, namespace: Mapping[str, Any], class_name: str, state: StateWriter
    ) -> None:
        self.index = index
        self.namespace = namespace
        self.class_name = class_name
        self.state = state
        self.refusals = Refusals(index, class_name)
        self.warnings: list[str] = []
        self.local_tops: set[str] = set()
        self._warned_modules: set[str] = set()

    def resolve(self, root: Piece) -> dict[str, Piece]:
        """Every piece the root needs, keyed by the global name it provides."""
        pieces: dict[str, Piece] = {}
        skipped: set[str] = {root.name}
        queue = deque((name, f"class {root.name}") for name in sorted(root.deps))
        while queue:
            name, user = queue.popleft()
            if name in pieces or name in skipped:
                continue
            piece = self._resolve(name, user)
            if piece is None:
                skipped.add(name)
                continue
            pieces[name] = piece
            where = f" ({piece.cells[0].label})" if piece.cells else ""
            queue.extend((dep, f"'{name}'{where}") for dep in sorted(piece.deps))
        return pieces

    def _resolve(self, name: str, user: str) -> Piece | None:
        if name in _MODULE_DUNDERS:
            return None
        if name not in self.namespace:
            if name in _BUILTINS:
                return None
            raise self.refusals.undefined(name, user)
        if name in _BUILTINS and not self.index.bindings(name):
            return None
        value = self.namespace[name]
        piece = self._as_import(name, value)
        local = piece is not None and self._local_modules(piece)
        if local and not _is_code_or_module(value):
            # Data imported from a file beside the notebook: write the value if we can.
            with contextlib.suppress(CaptureError):
                piece = self._as_data(name, value, user) or piece
        if piece is None and _is_main_code(value):
            piece = self._as_code(name, value, user)
        if piece is None and _is_type_alias(value):
            piece = self._as_alias(name)
        if piece is None:
            piece = self._as_data(name, value, user)
        if piece is None:
            piece = self._as_library_object(name, value)
        if piece is None:
            torch = sys.modules.get("torch")
            if _is_code_or_module(value) or (
                torch is not None and isinstance(value, torch.nn.Module)
            ):
                raise self.refusals.code(name, value, user)
            piece = self._as_state(name, value, user)
        if piece.kind == "import":
            self._warn_local(piece)
        return piece

    def _local_modules(self, piece: Piece) -> dict[str, str]:
        found: dict[str, str] = {}
        for spec in piece.imports:
            path = local_module_file(spec.module)
            if path is not None:
                found[spec.module.partition(".")[0]] = path
        return found

    def _warn_local(self, piece: Piece) -> None:
        for top, path in self._local_modules(piece).items():
            self.note_local(top, path)

    def note_local(self, module: str, path: str | None = None) -> None:
        """Ship a local module with the bundle, or say why it can't travel."""
        top = module.partition(".")[0]
        if not top or top in self.local_tops or top in self._warned_modules:
            return
        if local_top_level(top) is not None:
            self.local_tops.add(top)
            return
        path = path or local_module_file(top)
        if path is not None:
            self._warned_modules.add(top)
            self.warnings.append(
                f"model.py imports '{top}', a local module ({path}) outside the notebook's "
                "folder and its sys.path additions, so it is not shipped; the endpoint needs it "
                "installed too."
            )

    def _import_piece(self, name: str, specs: list[ImportSpec], cells: tuple[Cell, ...]) -> Piece:
        order = min((cell.position, 0) for cell in cells) if cells else (sys.maxsize, 0)
        return Piece(name, "import", imports=specs, order=order, cells=cells)

    def _as_import(self, name: str, value: object) -> Piece | None:
        """The notebook's own import line for ``name`` if it still gives the live value."""
        bindings = [b for b in self.index.bindings(name) if b.import_spec is not None]
        for binding in reversed(bindings):
            spec = binding.import_spec
            assert spec is not None
            if not spec.resolves_to(value):
                continue
            chosen: list[Binding] = [binding]
            if spec.attr is None and spec.asname is None:
                seen = {spec}
                for other in bindings:
                    other_spec = other.import_spec
                    assert other_spec is not None
                    if (
                        other_spec not in seen
                        and other_spec.attr is None
                        and other_spec.asname is None
                        and other_spec.resolves_to(value)
                    ):
                        seen.add(other_spec)
                        chosen.append(other)
            specs = [b.import_spec for b in chosen if b.import_spec is not None]
            return self._import_piece(name, specs, tuple(b.cell for b in chosen))
        for module_name, cell in reversed(self.index.star_imports):
            module = sys.modules.get(module_name)
            if module is not None and getattr(module, name, _MISSING) is value:
                return self._import_piece(name, [ImportSpec(module_name, name, None)], (cell,))
        if isinstance(value, types.ModuleType):
            module_name = value.__name__
            if sys.modules.get(module_name) is not value:
                return None
            asname = None if name == module_name else name
            return self._import_piece(name, [ImportSpec(module_name, None, asname)], ())
        return None

    def _as_library_object(self, name: str, value: object) -> Piece | None:
        location = importable_as(value)
        if location is None:
            return None
        module, attr = location
        return self._import_piece(name, [ImportSpec(module, attr, name)], ())

    def _code_piece(self, name: str, binding: Binding, text: str) -> Piece:
        return Piece(
            name,
            "code",
            text=text,
            deps=frozenset(global_names(text)),
            order=binding.order,
            cells=(binding.cell,),
        )

    def _as_code(self, name: str, value: Any, user: str) -> Piece | None:
        where, count = self.refusals.located(name)
        if _is_lambda(value):
            binding = self.index.latest(name, "lambda")
            if binding is None or value.__qualname__ != "<lambda>":
                return None
            return self._code_piece(name, binding, binding.segment())
        binding = self.index.latest(name, "def")
        real_name = getattr(value, "__name__", name)
        if binding is not None and real_name == name:
            node = binding.node
            if isinstance(value, type) != isinstance(node, ast.ClassDef):
                raise CaptureError(
                    f"'{name}' in the kernel no longer matches its latest definition in "
                    f"{binding.cell.label}. Re-run {binding.cell.label}, then this cell.",
                    variable=name,
                    execution_count=binding.cell.record.execution_count,
                )
            qualname = getattr(value, "__qualname__", name)
            if qualname == name:
                return self._code_piece(name, binding, binding.segment())
        if isinstance(value, type) and (piece := self._as_alias(name)) is not None:
            # A class made by a call, such as namedtuple(...): re-run that line.
            return piece
        if (
            real_name != name
            and isinstance(real_name, str)
            and real_name.isidentifier()
            and self.namespace.get(real_name) is value
        ):
            alias = self.index.latest(name)
            order = alias.order if alias is not None else (sys.maxsize, 0)
            cells = (alias.cell,) if alias is not None else ()
            return Piece(
                name,
                "code",
                text=f"{name} = {real_name}",
                deps=frozenset({real_name}),
                order=order,
                cells=cells,
            )
        kind = "class" if isinstance(value, type) else "function"
        raise CaptureError(
            f"Can't copy the source of {kind} '{name}'{where}, used by {user}: it was not made "
            f"by a top-level 'def'/'class' statement in a cell (made inside another function, "
            f"or by exec?). Define '{name}' at the top level of a cell and run that cell.",
            variable=name,
            execution_count=count,
        )

    def _as_alias(self, name: str) -> Piece | None:
        binding = self.index.latest(name)
        node = binding.node if binding is not None else None
        simple = (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ) or (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name))
        if binding is None or not simple:
            return None
        return self._code_piece(name, binding, binding.segment())

    def _as_data(self, name: str, value: object, user: str) -> Piece | None:
        binding = self.index.latest(name)
        order = binding.order if binding is not None else (sys.maxsize, 0)
        cells = (binding.cell,) if binding is not None else ()
        try:
            literal = render_literal(value, name)
        except RecursionError:
            raise self.refusals.code(name, value, user, " nested too deeply") from None
        except TooBigError:
            where, count = self.refusals.located(name)
            raise CaptureError(
                f"'{name}'{where} is too big to write into model.py (over "
                f"{LITERAL_LIMIT // 1_000_000} MB of source). Store it as a tensor, "
                f"or build it inside {self.class_name}.__init__.",
                variable=name,
                execution_count=count,
            ) from None
        except NotLiteralError:
            pass
        else:
            return Piece(
                name,
                "constant",
                text=f"{name} = {literal.text}",
                order=order,
                cells=cells,
                modules=literal.modules,
            )
        saved = tensor_constant(value)
        if saved is not None:
            tensor, suffix = saved
            return Piece(
                name,
                "tensor",
                text=f'{name} = _et_constants["{name}"]{suffix}',
                order=order,
                cells=cells,
                tensor=tensor,
            )
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(value, torch.device):
            if value.type != "cpu":
                self.warnings.append(
                    f"'{name}' is the device '{value}'; model.py keeps it, so the endpoint "
                    "needs that device too. Pick the device at run time to serve on CPU."
                )
            return Piece(
                name,
                "constant",
                text=f'{name} = _et_torch.device("{value}")',
                order=order,
                cells=cells,
                modules=frozenset({"torch"}),
            )
        if torch is not None and isinstance(value, torch.dtype):
            dtype = str(value).removeprefix("torch.")
            return Piece(
                name,
                "constant",
                text=f"{name} = _et_torch.{dtype}",
                order=order,
                cells=cells,
                modules=frozenset({"torch"}),
            )
        return None

    def _as_state(self, name: str, value: object, user: str) -> Piece:
        """Objects, string arrays, scikit-learn estimators: data in state.json, rebuilt at load."""
        binding = self.index.latest(name)
        order = binding.order if binding is not None else (sys.maxsize, 0)
        cells = (binding.cell,) if binding is not None else ()
        before = len(self.state.classes_used)
        try:
            self.state.add_global(name, value)
        except Unencodable as error:
            raise self.refusals.unencodable(name, value, user, error) from None
        needed = self.state.classes_used[before:]
        deps = frozenset(
            c.__qualname__ for c in needed if getattr(c, "__module__", None) == "__main__"
        )
        for cls in needed:
            self.note_local(getattr(cls, "__module__", ""))
        return Piece(
            name, "state", text=f'{name} = _et_state["{name}"]', deps=deps, order=order, cells=cells
        )
