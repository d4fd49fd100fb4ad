"""Entry point: from a model cell, the notebook history and the kernel's namespace to model.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from easytensor_jupyter.state import StateWriter, class_ref_policy

from ._emit import emit
from ._history import Cell, Index, parse_cell
from ._local import find_local_modules, local_top_level
from ._resolve import Piece, Resolver
from ._scopes import global_names
from ._select import find_model_class
from ._types import CapturedModel, CaptureError, CellRecord

__all__ = ["capture_model", "new_state_writer"]


def _cells(cell_source: str, history: Sequence[CellRecord]) -> tuple[list[Cell], Cell]:
    """Parsed history plus the model cell, which is placed where it ran.

    When the model cell is already in the history (the magic is running it now),
    that entry is used so the cell keeps its ``[N]`` label; otherwise it is
    treated as the most recent cell.
    """
    cells = [parse_cell(record, position) for position, record in enumerate(history)]
    model = parse_cell(CellRecord(cell_source, None), len(cells))
    if model.tree is None:
        raise CaptureError(
            "The model cell is not valid Python, so the class can't be captured. "
            "Fix the syntax error and run the cell again."
        )
    wanted = model.source.strip()
    for cell in reversed(cells):
        if cell.tree is not None and cell.source.strip() == wanted:
            return cells, cell
    cells.append(model)
    return cells, model


def capture_model(
    cell_source: str,
    history: Sequence[CellRecord],
    namespace: Mapping[str, Any],
    class_name: str | None = None,
    state: StateWriter | None = None,
) -> CapturedModel:
    """Build a standalone model.py for the model class defined in ``cell_source``.

    ``history`` is every executed cell in execution order (the model cell may be
    among them) and ``namespace`` the kernel's globals after the model cell ran.
    Code is copied from the cells, data is written from the live values, and
    tensors go to ``CapturedModel.constants``, objects to its ``state``. ``state`` may
    already hold the instance's own state (constructor arguments, attributes): the classes it
    uses are captured too. Raises CaptureError, with a message meant for the user, for anything
    that would need pickling.
    """
    state = state if state is not None else new_state_writer()
    cells, model_cell = _cells(cell_source, history)
    chosen = find_model_class(model_cell, namespace, class_name)
    text = chosen.segment()
    try:
        deps = frozenset(global_names(text))
    except SyntaxError as error:
        raise CaptureError(f"Class '{chosen.name}' could not be analysed: {error}.") from None
    used_by_instance = {
        c.__qualname__ for c in state.classes_used if getattr(c, "__module__", None) == "__main__"
    }
    model = Piece(
        chosen.name,
        "code",
        text=text,
        deps=deps | (used_by_instance - {chosen.name}),
        order=chosen.order,
        cells=(model_cell,),
    )
    index = Index(cells)
    resolver = Resolver(index, namespace, chosen.name, state)
    for cls in state.classes_used:
        resolver.note_local(getattr(cls, "__module__", ""))
    pieces = resolver.resolve(model)
    source = emit(model, pieces.values(), index.future_annotations)
    try:
        compile(source, "model.py", "exec")
    except SyntaxError as error:
        raise CaptureError(
            f"The generated model.py does not compile ({error.msg}, line {error.lineno}). "
            "Please report this; as a workaround, move the helpers into the model cell."
        ) from None
    ordered = list(pieces.values())
    ordered.sort(key=lambda p: (p.kind != "import", *p.order, p.name))
    return CapturedModel(
        source=source,
        class_name=chosen.name,
        constants={p.name: p.tensor for p in ordered if p.tensor is not None},
        captured_names=[p.name for p in ordered],
        warnings=list(resolver.warnings),
        state=state,
        local_modules=find_local_modules(resolver.local_tops),
    )


def new_state_writer() -> StateWriter:
    """Notebook classes by name, classes of shipped local modules by module."""
    return StateWriter(class_ref_policy(lambda module: local_top_level(module) is not None))
