"""Which global names a piece of code reads.

``symtable`` is the compiler's own scope analysis, so parameters, comprehension
variables, ``with``/``except`` targets, walrus targets, class attributes and
``nonlocal`` names come out exactly as Python resolves them, with no visitor of
our own to get wrong.
"""

from __future__ import annotations

import ast
import symtable

__all__ = ["global_names"]


def global_names(source: str) -> set[str]:
    """Names that ``source`` (one or more top-level statements) reads from module scope.

    Names it binds at its own top level are excluded, so a recursive function or a
    class that mentions itself does not depend on itself.
    """
    top = symtable.symtable(source, "<capture>", "exec")
    # symtable does not count ``x += 1`` as a read, but it reads the global.
    augmented = {
        node.target.id
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name)
    }
    names: set[str] = set()
    bound: set[str] = set()
    for symbol in top.get_symbols():
        if symbol.is_referenced():
            names.add(symbol.get_name())
        if symbol.is_assigned() or symbol.is_imported() or symbol.is_namespace():
            bound.add(symbol.get_name())
    pending = list(top.get_children())
    while pending:
        table = pending.pop()
        for symbol in table.get_symbols():
            used = symbol.is_referenced() or symbol.get_name() in augmented
            if used and symbol.is_global():
                names.add(symbol.get_name())
        pending.extend(table.get_children())
    return names - bound
