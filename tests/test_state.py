"""The bundle's state files: every kind of value round-trips with its type, nothing is pickled,
and a worker refuses what it must not load."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import fractions
import json
import pathlib
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from easytensor_jupyter.state import (
    STATE_JSON,
    STATE_SKOPS,
    StateLoadError,
    StateReader,
    StateWriter,
    Unencodable,
    class_ref_policy,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@dataclasses.dataclass
class Config:
    hidden: int
    labels: list[str]


@dataclasses.dataclass(frozen=True)
class Frozen:
    lo: float


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class Slotted:
    __slots__ = ("n", "vocab")

    def __init__(self, vocab: dict[str, int]) -> None:
        self.vocab = vocab
        self.n = len(vocab)


Point = collections.namedtuple("Point", "x y")


class Node:
    def __init__(self, name: str, parent: Node | None = None) -> None:
        self.name = name
        self.parent = parent
        self.children: list[Node] = []
        if parent is not None:
            parent.children.append(self)


NAMESPACE = {c.__name__: c for c in (Config, Frozen, Color, Slotted, Point, Node)}


def _policy(target: Any, instance_class: bool) -> dict[str, str] | None:
    """Classes of this test module stand in for the notebook's own classes."""
    if getattr(target, "__module__", None) == __name__:
        name = target.__qualname__
        return None if "<" in name else {"module": "__main__", "name": name}
    return class_ref_policy(lambda _: False)(target, instance_class)


def round_trip(tmp_path: Path, values: dict[str, Any]) -> dict[str, Any]:
    writer = StateWriter(_policy)
    for name, value in values.items():
        writer.add_global(name, value)
    writer.write(tmp_path)
    return StateReader(tmp_path).globals(NAMESPACE)


def test_numpy_values_keep_dtype_and_type(tmp_path: Path) -> None:
    values = {
        "names": np.array(["setosa", "versicolor"]),
        "raw": np.array([b"ab", b"c"]),
        "mask": np.array([[True, False], [False, True]]),
        "half": np.arange(6, dtype=np.float16).reshape(2, 3),
        "objs": np.array([1, "two", None, 3.5], dtype=object),
        "mixed": [np.str_("a"), np.float32(1.5), np.int64(3), np.bool_(True)],
        "in_dict": {"k": (np.uint8(7), {np.int16(2)})},
    }
    out = round_trip(tmp_path, values)
    for key in ("names", "raw", "mask", "half"):
        assert out[key].dtype == values[key].dtype and (out[key] == values[key]).all()
    assert out["objs"].dtype == object and list(out["objs"]) == [1, "two", None, 3.5]
    assert [type(v) for v in out["mixed"]] == [np.str_, np.float32, np.int64, np.bool_]
    assert out["mixed"] == values["mixed"]
    (scalar, tags) = out["in_dict"]["k"]
    assert type(scalar) is np.uint8 and type(next(iter(tags))) is np.int16


def test_objects_literals_and_collections(tmp_path: Path) -> None:
    values = {
        "cfg": Config(8, ["a", "b"]),
        "frozen": Frozen(0.5),
        "color": Color.BLUE,
        "slotted": Slotted({"x": 1}),
        "point": Point(1, 2),
        "regex": re.compile(r"\w+", re.IGNORECASE),
        "when": datetime.datetime(2024, 1, 2, 3, 4, 5),
        "day": datetime.date(2024, 6, 1),
        "span": datetime.timedelta(days=3, seconds=5),
        "path": pathlib.PurePosixPath("/srv/data"),
        "money": decimal.Decimal("19.90"),
        "ratio": fractions.Fraction(2, 3),
        "blob": b"\x00\xff",
        "root": 1 + 2j,
        "nan": float("nan"),
        "int_keys": {0: "neg", 1: "pos"},
        "counter": collections.Counter("hello"),
        "ordered": collections.OrderedDict([("b", 1), ("a", 2)]),
        "recent": collections.deque([1, 2], maxlen=3),
        "groups": collections.defaultdict(list, {"x": [1]}),
        "tensor": torch.arange(4.0),
        "device": torch.device("cpu"),
        "dtype": torch.bfloat16,
    }
    out = round_trip(tmp_path, values)
    for key in ("cfg", "frozen", "color", "point", "regex", "when", "day", "span", "path"):
        assert out[key] == values[key] and type(out[key]) is type(values[key]), key
    for key in ("money", "ratio", "blob", "root", "int_keys", "counter", "ordered"):
        assert out[key] == values[key] and type(out[key]) is type(values[key]), key
    assert out["slotted"].vocab == {"x": 1} and out["slotted"].n == 1
    assert out["recent"].maxlen == 3 and list(out["recent"]) == [1, 2]
    assert out["groups"]["missing"] == [] and out["nan"] != out["nan"]
    assert torch.equal(out["tensor"], values["tensor"])
    assert (out["device"], out["dtype"]) == (values["device"], values["dtype"])
    document = json.loads((tmp_path / STATE_JSON).read_text())
    assert document["format"] == 1


def test_shared_references_and_cycles_survive(tmp_path: Path) -> None:
    root = Node("animal")
    cat = Node("cat", root)
    shared = {"n": 1}
    out = round_trip(tmp_path, {"tree": {"cat": cat, "root": root}, "a": shared, "b": [shared]})
    assert out["tree"]["cat"].parent is out["tree"]["root"]
    assert out["tree"]["root"].children[0] is out["tree"]["cat"]
    assert out["b"][0] is out["a"]
    loop: list[Any] = []
    loop.append(loop)
    (tmp_path / "loop").mkdir()
    again = round_trip(tmp_path / "loop", {"loop": loop})
    assert again["loop"][0] is again["loop"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (threading.Lock(), "_thread.lock"),
        ({"f": Path(__file__).open()}, "open file"),  # noqa: SIM115
        (torch.nn.Linear(1, 1), "nn.Module"),
        ([lambda x: x], "a function"),
        (np.array(["2024"], dtype="datetime64[D]"), "dtype"),
    ],
)
def test_what_cannot_travel_is_named(value: Any, reason: str) -> None:
    writer = StateWriter(_policy)
    with pytest.raises(Unencodable) as caught:
        writer.add_global("VALUE", value)
    assert reason in str(caught.value) and caught.value.fix
    if isinstance(value, dict):
        value["f"].close()


def test_a_tuple_in_a_cycle_is_refused() -> None:
    inner: list[Any] = []
    outer = (inner,)
    inner.append(outer)
    with pytest.raises(Unencodable, match="reference cycle"):
        StateWriter(_policy).add_global("CYCLE", outer)


def test_sklearn_objects_travel_through_skops(tmp_path: Path) -> None:
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(np.random.default_rng(0).normal(size=(20, 3)))
    out = round_trip(tmp_path, {"scaler": scaler})
    assert (out["scaler"].mean_ == scaler.mean_).all()
    assert (tmp_path / STATE_SKOPS).is_file()


def test_untrusted_types_in_skops_are_refused_by_name(tmp_path: Path) -> None:
    import skops.io

    (tmp_path / STATE_JSON).write_text(
        json.dumps({"format": 1, "globals": {"x": {"$": "skops", "key": "s0"}}})
    )
    (tmp_path / STATE_SKOPS).write_bytes(skops.io.dumps({"s0": Config(1, [])}))
    with pytest.raises(StateLoadError, match=r"test_state\.Config"):
        StateReader(tmp_path).globals(NAMESPACE)


def test_bad_state_files_fail_with_the_path(tmp_path: Path) -> None:
    (tmp_path / STATE_JSON).write_text(
        json.dumps(
            {
                "format": 1,
                "globals": {
                    "cfg": {"$": "obj", "cls": {"module": "__main__", "name": "Gone"}, "state": {}}
                },
            }
        )
    )
    with pytest.raises(StateLoadError, match=r"cfg: model\.py defines no 'Gone'"):
        StateReader(tmp_path).globals({})
    (tmp_path / STATE_JSON).write_text(json.dumps({"format": 1, "globals": {"x": {"$": "pickle"}}}))
    with pytest.raises(StateLoadError, match="unknown node type 'pickle'"):
        StateReader(tmp_path).globals({})
