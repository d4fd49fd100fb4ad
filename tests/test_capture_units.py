"""Pieces of capture that need no shell: scope analysis, literal rendering, cell parsing."""

from __future__ import annotations

import collections
import textwrap

import numpy as np
import pytest
import torch

from easytensor_jupyter.capture import CellRecord
from easytensor_jupyter.capture._history import ImportSpec, Index, parse_cell
from easytensor_jupyter.capture._scopes import global_names
from easytensor_jupyter.capture._values import (
    NotLiteralError,
    TooBigError,
    importable_as,
    render_literal,
    tensor_constant,
)


def names(source: str) -> set[str]:
    return global_names(textwrap.dedent(source))


def test_parameters_and_assignments_are_local() -> None:
    assert names(
        """
        def f(a, b=DEFAULT, *args, c: Ann, **kw):
            x = a + b
            y: int = 3
            x += y
            del x
            return len(args) + c + kw["k"] + GLOBAL
        """
    ) == {"DEFAULT", "Ann", "len", "int", "GLOBAL"}


def test_comprehension_and_lambda_variables_are_local() -> None:
    assert names(
        """
        def f(items):
            a = [i for i in items if i > LIMIT]
            b = {k: v for k, v in zip(items, items)}
            c = {s for s in items}
            d = list(g * 2 for g in items)
            e = sorted(items, key=lambda item: item[KEY])
            return a, b, c, d, e
        """
    ) == {"LIMIT", "zip", "list", "sorted", "KEY"}


def test_for_with_except_walrus_are_local() -> None:
    assert names(
        """
        def f(path):
            for index, (left, *rest) in enumerate(path):
                pass
            with open(path) as handle, CTX() as (one, two):
                pass
            try:
                pass
            except Boom as err:
                print(err)
            if (size := len(path)) > 1:
                return size, index, left, rest, handle, one, two
        """
    ) == {"enumerate", "open", "CTX", "Boom", "print", "len"}


def test_global_and_nonlocal() -> None:
    assert names(
        """
        def outer():
            total = 0
            def inner():
                nonlocal total
                global COUNTER
                COUNTER += 1
                total += 1
            def only_assigns():
                global WRITTEN
                WRITTEN = 1
            return inner
        """
    ) == {"COUNTER"}


def test_class_attributes_methods_and_self_reference() -> None:
    assert names(
        """
        @register(NAME)
        class Model(Base, metaclass=Meta):
            size = SIZE
            doubled = size * 2
            listed = [size for _ in range(2)]

            def method(self, x=size):
                return Model, super().method(x) + size + helper(self.doubled)
        """
    ) == {"register", "NAME", "Base", "Meta", "SIZE", "range", "super", "size", "helper"}


def test_lambda_assignment_free_names() -> None:
    assert names("text_pipeline = lambda x: [vocab[token] for token in tokenizer(x)]") == {
        "vocab",
        "tokenizer",
    }


def test_literals_render_faithfully() -> None:
    counter = collections.Counter("abca")
    default = collections.defaultdict(list, {"k": [1]})
    ordered = collections.OrderedDict([("b", 1), ("a", 2)])
    cases = [
        ({0: "neg", 1: "pos"}, "{0: 'neg', 1: 'pos'}"),
        ({"the", "a"}, "{'a', 'the'}"),
        (frozenset(), "frozenset()"),
        ((1,), "(1,)"),
        ([1.0, float("nan")], '[1.0, float("nan")]'),
        ({(1, 2): b"x", None: True}, "{(1, 2): b'x', None: True}"),
        (counter, "_et_collections.Counter({'a': 2, 'b': 1, 'c': 1})"),
        (default, "_et_collections.defaultdict(list, {'k': [1]})"),
        (ordered, "_et_collections.OrderedDict({'b': 1, 'a': 2})"),
    ]
    for value, expected in cases:
        assert render_literal(value, "X").text == expected


def test_long_literals_are_split_over_lines() -> None:
    vocab = {f"word{i}": i for i in range(30)}
    text = render_literal({"vocab": vocab, "ids": list(range(60))}, "CONFIG").text
    lines = text.splitlines()
    assert lines[0] == "{" and lines[-1] == "}"
    assert "        'word0': 0," in lines
    assert all(len(line) <= 100 for line in lines)
    assert eval(text) == {"vocab": vocab, "ids": list(range(60))}


def test_non_literals_report_where() -> None:
    with pytest.raises(NotLiteralError) as caught:
        render_literal({"a": [1, object()]}, "X")
    assert caught.value.path == "X['a'][1]"
    cyclic: list[object] = []
    cyclic.append(cyclic)
    with pytest.raises(NotLiteralError):
        render_literal(cyclic, "C")
    with pytest.raises(NotLiteralError):
        render_literal(collections.defaultdict(lambda: 0), "D")
    with pytest.raises(TooBigError):
        render_literal(["y" * 1000] * 100, "B", limit=50_000)


def test_tensor_constants() -> None:
    tensor, suffix = tensor_constant(torch.nn.Parameter(torch.ones(2, 3)).t()) or (None, "")
    assert tensor is not None and suffix == "" and tensor.is_contiguous()
    assert not tensor.requires_grad and tensor.shape == (3, 2)
    array, suffix = tensor_constant(np.arange(6, dtype=">i4").reshape(2, 3)[:, 1]) or (None, "")
    assert array is not None and suffix == ".numpy()"
    assert array.tolist() == [1, 4] and array.dtype == torch.int32
    scalar = tensor_constant(np.float32(2.5))
    assert scalar is not None and scalar[1] == ".numpy()[()]"
    assert tensor_constant(np.array(["a"])) is None
    assert tensor_constant([1, 2]) is None


def test_importable_as_prefers_public_paths() -> None:
    assert importable_as(torch.nn.Linear) == ("torch.nn", "Linear")
    assert importable_as(torch.relu) == ("torch", "relu")
    assert importable_as(collections.Counter) == ("collections", "Counter")
    assert importable_as(object()) is None


def test_import_specs_check_the_live_value() -> None:
    assert ImportSpec("torch.nn", None, "nn").resolves_to(torch.nn)
    assert ImportSpec("torch.nn", None, None).resolves_to(torch)
    assert ImportSpec("torch", "nn", "tnn").render() == "from torch import nn as tnn"
    assert not ImportSpec("torch.tensor", None, None).resolves_to(torch)
    assert not ImportSpec("collections", "Counter", None).resolves_to(dict)


def test_cells_are_parsed_like_the_kernel_ran_them() -> None:
    raw = CellRecord("%matplotlib inline\n!ls\nx = 1\ndef f():\n    return x\n", 1)
    cell = parse_cell(raw, 0)
    assert cell.tree is not None and cell.label == "cell [1]"
    magic = CellRecord("%%easytensor_model M\n%time y = 2\nclass M:\n    pass\n", 2)
    other = CellRecord("%%writefile foo.py\nz = 1\n", 3)
    broken = CellRecord("def (:\n", 4)
    index = Index([parse_cell(r, i) for i, r in enumerate([raw, magic, other, broken])])
    assert [b.cell.label for b in index.bindings("x")] == ["cell [1]"]
    assert index.latest("M", "def") is not None
    assert index.latest("z") is None
    assert index.latest("f", "def") is not None
    latest_f = index.latest("f", "def")
    assert latest_f is not None and latest_f.segment() == "def f():\n    return x"


def test_bindings_cover_every_module_level_form() -> None:
    source = textwrap.dedent(
        """
        import a.b.c, d as e
        from f import g, h as i
        from .rel import j
        k = l = 1
        m, (n, *o) = 1, (2, 3)
        p += 1
        q: int = 1
        r: int
        for s in []: pass
        with ctx() as t: pass
        try: pass
        except E as u: pass
        if (v := 1): pass
        [w for w in [] if (x := w)]
        def fn():
            global y
            y = 1
        class C: pass
        if True:
            def nested(): pass
        lam = lambda: 0
        """
    )
    index = Index([parse_cell(CellRecord(source, 1), 0)])
    for name in [
        "a",
        "e",
        "g",
        "i",
        "j",
        "k",
        "l",
        "m",
        "n",
        "o",
        "p",
        "q",
        "s",
        "t",
        "u",
        "v",
        "x",
        "y",
        "fn",
        "C",
        "nested",
        "lam",
    ]:
        assert index.latest(name) is not None, name
    for name in ["r", "w", "b", "c"]:
        assert index.latest(name) is None, name
    assert index.latest("lam", "lambda") is not None
    assert index.latest("nested", "def") is not None
