"""Realistic notebook patterns for the capture corpus (tests/test_capture_corpus.py).

Each case is the cells a data scientist would write: some set-up, then a model cell with the
magic that builds (and often trains) the model. The runner deploys each one to a real server
from a real kernel and compares the served answers with the live model's over HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Case:
    key: str
    setup: str
    model: str
    var: str
    inputs: str
    flags: str = ""
    expect_output: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)


def _lin(name: str, n_in: int, body: str, init: str = "", args: str = "") -> str:
    """A small model class: a Linear layer plus the given predict_single body."""
    params = f", {args}" if args else ""
    return (
        f"class {name}(nn.Module):\n"
        f"    def __init__(self{params}):\n"
        f"        super().__init__()\n"
        f"        self.lin = nn.Linear({n_in}, 3)\n"
        + "".join(f"        {line}\n" for line in init.splitlines())
        + "\n    def predict_single(self, x):\n"
        + "".join(f"        {line}\n" for line in body.splitlines())
    )


CASES: list[Case] = [
    Case(
        "numpy_string_array",
        "from sklearn.datasets import load_iris\niris = load_iris()\nSPECIES = iris.target_names",
        _lin("IrisNames", 4, "i = int(self.lin(torch.tensor(x)).argmax())\nreturn str(SPECIES[i])")
        + "torch.manual_seed(0)\nm_species = IrisNames()",
        "m_species",
        "[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]",
    ),
    Case(
        "list_of_numpy_str",
        "SPECIES_LIST = list(iris.target_names)",
        _lin(
            "IrisList",
            4,
            "i = int(self.lin(torch.tensor(x)).argmax())\n"
            "return [SPECIES_LIST[i], type(SPECIES_LIST[i]).__name__]",
        )
        + "torch.manual_seed(1)\nm_species_list = IrisList()",
        "m_species_list",
        "[[5.1, 3.5, 1.4, 0.2], [5.9, 3.0, 4.2, 1.5]]",
        flags="--sample '[5.1, 3.5, 1.4, 0.2]'",
    ),
    Case(
        "numpy_scalars_in_containers",
        "SETTINGS = {'cut': np.float32(0.25), 'k': np.int64(2), 'on': np.bool_(True),\n"
        "            'pair': (np.float64(1.5), np.str_('x')), 'tags': {np.int64(1), np.int64(2)}}",
        _lin(
            "ScalarsModel",
            2,
            "y = self.lin(torch.tensor(x)).tolist()\n"
            "kinds = sorted(type(v).__name__ for v in SETTINGS.values())\n"
            "return [y[int(SETTINGS['k'])] > SETTINGS['cut'], kinds, SETTINGS['pair'][1] + 'y',\n"
            "        sorted(int(t) for t in SETTINGS['tags'])]",
        )
        + "torch.manual_seed(2)\nm_scalars = ScalarsModel()",
        "m_scalars",
        "[[1.0, 2.0], [-1.0, 0.5]]",
    ),
    Case(
        "bool_mask_array",
        "FEATURE_MASK = np.array([True, False, True, True])",
        _lin(
            "Masked",
            3,
            "v = np.asarray(x, dtype=np.float32)[FEATURE_MASK]\nreturn self.lin(torch.from_numpy(v)).tolist()",
        )
        + "torch.manual_seed(3)\nm_mask = Masked()",
        "m_mask",
        "[[1.0, 2.0, 3.0, 4.0], [0.0, 9.0, -1.0, 0.5]]",
    ),
    Case(
        "object_array_of_plain_values",
        "LOOKUP = np.array([1, 'two', None, 3.5], dtype=object)",
        _lin("ObjArr", 1, "return [repr(LOOKUP[int(x) % 4]), LOOKUP.dtype.str]")
        + "m_objarr = ObjArr()",
        "m_objarr",
        "[1, 2, 7]",
    ),
    Case(
        "dataclass_global",
        "from dataclasses import dataclass, field\n"
        "@dataclass\nclass Settings:\n    scale: float\n    labels: list = field(default_factory=list)\n"
        "SET = Settings(2.5, ['neg', 'neu', 'pos'])",
        _lin(
            "WithSettings",
            2,
            "i = int(self.lin(torch.tensor(x) * SET.scale).argmax())\nreturn SET.labels[i]",
        )
        + "torch.manual_seed(4)\nm_dc = WithSettings()",
        "m_dc",
        "[[1.0, 2.0], [3.0, -4.0]]",
    ),
    Case(
        "dataclass_constructor_argument",
        "@dataclass\nclass Config:\n    hidden: int\n    labels: list",
        "class ConfNet(nn.Module):\n    def __init__(self, cfg):\n        super().__init__()\n"
        "        self.cfg = cfg\n        self.lin = nn.Linear(3, cfg.hidden)\n"
        "        self.out = nn.Linear(cfg.hidden, len(cfg.labels))\n\n"
        "    def predict_single(self, x):\n"
        "        return self.cfg.labels[int(self.out(torch.relu(self.lin(torch.tensor(x)))).argmax())]\n\n"
        "torch.manual_seed(5)\ncfg = Config(hidden=8, labels=['a', 'b', 'c'])\nm_cfg = ConfNet(cfg)",
        "m_cfg",
        "[[1.0, 2.0, 3.0], [-1.0, 0.0, 1.0], [0.3, 0.3, 0.3]]",
    ),
    Case(
        "namedtuple_global",
        "from collections import namedtuple\nRange = namedtuple('Range', 'low high')\nLIMITS = Range(-1.0, 1.0)",
        _lin(
            "Clamped",
            2,
            "y = self.lin(torch.tensor(x)).clamp(LIMITS.low, LIMITS.high)\nreturn [y.tolist(), LIMITS._fields]",
        )
        + "torch.manual_seed(6)\nm_nt = Clamped()",
        "m_nt",
        "[[10.0, -10.0], [0.1, 0.2]]",
    ),
    Case(
        "enum_members",
        "import enum\nclass Mood(enum.Enum):\n    SAD = 0\n    OK = 1\n    HAPPY = 2\nDEFAULT_MOOD = Mood.OK",
        _lin(
            "MoodModel",
            2,
            "i = int(self.lin(torch.tensor(x)).argmax())\nmood = Mood(i)\n"
            "return [mood.name, mood is DEFAULT_MOOD]",
        )
        + "torch.manual_seed(7)\nm_enum = MoodModel()",
        "m_enum",
        "[[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]",
    ),
    Case(
        "tokenizer_object_global",
        "class WordTokenizer:\n    def __init__(self, vocab):\n        self.vocab = {w: i for i, w in enumerate(vocab)}\n"
        "        self.unk = len(self.vocab)\n    def encode(self, text):\n"
        "        return [self.vocab.get(w, self.unk) for w in text.lower().split()]\n"
        "TOKENIZER = WordTokenizer(['the', 'cat', 'sat', 'on', 'mat'])",
        "class BagModel(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.emb = nn.EmbeddingBag(6, 4)\n        self.head = nn.Linear(4, 2)\n\n"
        "    def predict_single(self, text):\n        ids = torch.tensor(TOKENIZER.encode(text) or [TOKENIZER.unk])\n"
        "        return self.head(self.emb(ids, torch.tensor([0]))).squeeze(0).tolist()\n\n"
        "torch.manual_seed(8)\nm_tok = BagModel()",
        "m_tok",
        "['the cat sat', 'a dog on the mat', '']",
    ),
    Case(
        "tokenizer_constructor_argument_attribute",
        "tok2 = WordTokenizer(['good', 'bad', 'fine'])",
        "class TokNet(nn.Module):\n    def __init__(self, tokenizer):\n        super().__init__()\n"
        "        self.tokenizer = tokenizer\n        self.emb = nn.EmbeddingBag(4, 3)\n\n"
        "    def predict_single(self, text):\n        ids = torch.tensor(self.tokenizer.encode(text) or [3])\n"
        "        return self.emb(ids, torch.tensor([0])).squeeze(0).tolist()\n\n"
        "torch.manual_seed(9)\nm_toknet = TokNet(tok2)",
        "m_toknet",
        "['good good', 'bad fine', 'unknown words']",
    ),
    Case(
        "object_attribute_set_after_construction",
        "",
        "class LateTok(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.emb = nn.EmbeddingBag(5, 2)\n        self.tok = None\n\n"
        "    def predict_single(self, text):\n        ids = torch.tensor(self.tok.encode(text) or [0])\n"
        "        return self.emb(ids, torch.tensor([0])).squeeze(0).tolist()\n\n"
        "torch.manual_seed(10)\nm_late = LateTok()\nm_late.tok = WordTokenizer(['x', 'y', 'z', 'w'])",
        "m_late",
        "['x y', 'w z q']",
        expect_output=("Carried state: model.tok",),
    ),
    Case(
        "compiled_regex",
        'import re\nTOKEN_RE = re.compile(r"[a-z\']+", re.IGNORECASE)',
        _lin(
            "RegexCount",
            1,
            "words = TOKEN_RE.findall(x)\nreturn [len(words), self.lin(torch.tensor([float(len(words))])).tolist()]",
        )
        + "torch.manual_seed(11)\nm_re = RegexCount()",
        "m_re",
        "[\"Don't STOP me now\", '123 456', 'a']",
    ),
    Case(
        "dates_and_times",
        "import datetime\nCUTOFF = datetime.date(2024, 6, 1)\nWINDOW = datetime.timedelta(days=30)\n"
        "STAMP = datetime.datetime(2024, 1, 2, 3, 4, 5)",
        _lin(
            "DateModel",
            1,
            "d = datetime.date.fromisoformat(x)\n"
            "return [d >= CUTOFF, (d - CUTOFF) < WINDOW, STAMP.isoformat()]",
        )
        + "m_date = DateModel()",
        "m_date",
        "['2024-06-15', '2023-01-01', '2024-08-30']",
    ),
    Case(
        "path_decimal_fraction",
        "import pathlib, decimal, fractions\nBASE = pathlib.Path('/srv/data')\n"
        "PRICE = decimal.Decimal('19.90')\nRATIO = fractions.Fraction(2, 3)",
        _lin(
            "Misc",
            1,
            "return [str(BASE / x), str(PRICE * 2), str(RATIO * 3), type(BASE).__name__]",
        )
        + "m_misc = Misc()",
        "m_misc",
        "['a.txt', 'b/c.csv']",
    ),
    Case(
        "bytes_complex_frozenset",
        "MAGIC = b'\\x89PNG'\nROOT = complex(0.5, -1.5)\nALLOWED = frozenset({'red', 'green'})",
        _lin(
            "Literals",
            1,
            "if isinstance(x, str):\n    return [MAGIC.hex(), x in ALLOWED]\nreturn [abs(ROOT * x), ROOT.imag]",
        )
        + "m_lit = Literals()",
        "m_lit",
        "[2, 'red', 3.5]",
    ),
    Case(
        "collections_family",
        "from collections import Counter, OrderedDict, deque, defaultdict\n"
        "PRIOR = Counter({'spam': 3, 'ham': 5})\nORDER = OrderedDict([('b', 1), ('a', 2)])\n"
        "RECENT = deque([1, 2, 3], maxlen=3)\nGROUPS = defaultdict(list, {'x': [1]})",
        _lin(
            "Collections",
            1,
            "return [PRIOR[x], list(ORDER), list(RECENT), RECENT.maxlen, GROUPS[x], type(GROUPS).__name__]",
        )
        + "m_coll = Collections()",
        "m_coll",
        "['spam', 'eggs', 'x']",
    ),
    Case(
        "defaultdict_with_notebook_factory",
        "def empty_stats():\n    return {'n': 0}\nSTATS = defaultdict(empty_stats, {'a': {'n': 3}})",
        _lin("FactoryModel", 1, "return STATS[x]['n']") + "m_factory = FactoryModel()",
        "m_factory",
        "['a', 'b']",
    ),
    Case(
        "classes_attribute_after_fit",
        "",
        _lin("Classified", 2, "return self.classes_[int(self.lin(torch.tensor(x)).argmax())]")
        + "torch.manual_seed(12)\nm_classes = Classified()\nm_classes.classes_ = ['cat', 'dog', 'bird']",
        "m_classes",
        "[[1.0, 2.0], [-3.0, 0.5]]",
        expect_output=("model.classes_",),
    ),
    Case(
        "threshold_tuned_after_training",
        "",
        _lin(
            "Thresholded",
            2,
            "p = torch.sigmoid(self.lin(torch.tensor(x)))[0]\nreturn bool(p > self.threshold)",
            init="self.threshold = 0.5",
        )
        + "torch.manual_seed(13)\nm_thr = Thresholded()\nm_thr.threshold = 0.35",
        "m_thr",
        "[[0.1, 0.2], [1.0, -1.0], [-2.0, 0.0]]",
    ),
    Case(
        "vocabulary_built_while_training",
        "CORPUS = ['the quick fox', 'the lazy dog', 'quick quick dog']",
        "class Vocab(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.word_index = {}\n        self.emb = nn.EmbeddingBag(10, 2)\n\n"
        "    def fit_vocab(self, texts):\n        for t in texts:\n            for w in t.split():\n"
        "                self.word_index.setdefault(w, len(self.word_index) + 1)\n\n"
        "    def predict_single(self, text):\n        ids = [self.word_index.get(w, 0) for w in text.split()] or [0]\n"
        "        return self.emb(torch.tensor(ids), torch.tensor([0])).squeeze(0).tolist()\n\n"
        "torch.manual_seed(14)\nm_vocab = Vocab()\nm_vocab.fit_vocab(CORPUS)",
        "m_vocab",
        "['the dog', 'quick lazy fox', 'zebra']",
    ),
    Case(
        "submodule_attribute",
        "",
        "class Calibrated(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.head = nn.Linear(2, 2)\n\n    def predict_single(self, x):\n"
        "        logits = self.head(torch.tensor(x)) / self.head.temperature\n"
        "        return logits.softmax(-1).tolist()\n\n"
        "torch.manual_seed(15)\nm_sub = Calibrated()\nm_sub.head.temperature = 2.5",
        "m_sub",
        "[[1.0, 2.0], [0.0, -1.0]]",
        expect_output=("model.head.temperature",),
    ),
    Case(
        "plain_tensor_attribute_statistics",
        "DATA = torch.randn(50, 3) * 4 + 1",
        _lin(
            "Normalised",
            3,
            "z = (torch.tensor(x) - self.mean) / self.std\nreturn self.lin(z).tolist()",
        )
        + "torch.manual_seed(16)\nm_norm = Normalised()\nm_norm.mean = DATA.mean(0)\nm_norm.std = DATA.std(0)",
        "m_norm",
        "[[1.0, 1.0, 1.0], [5.0, -3.0, 0.0]]",
    ),
    Case(
        "non_persistent_buffer_updated",
        "",
        "class Running(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.lin = nn.Linear(2, 1)\n        self.register_buffer('shift', torch.zeros(2), persistent=False)\n\n"
        "    def predict_single(self, x):\n        return float(self.lin(torch.tensor(x) - self.shift))\n\n"
        "torch.manual_seed(17)\nm_buf = Running()\nm_buf.shift += torch.tensor([0.5, -2.0])",
        "m_buf",
        "[[1.0, 1.0], [0.0, 3.0]]",
    ),
    Case(
        "float64_model",
        "",
        _lin("Double", 2, "return self.lin(torch.tensor(x, dtype=torch.float64)).tolist()")
        + "torch.manual_seed(18)\nm_f64 = Double().double()",
        "m_f64",
        "[[0.1, 0.2], [1e-8, 3.0]]",
    ),
    Case(
        "bfloat16_and_float16_model",
        "",
        "class Half(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.a = nn.Linear(2, 2).to(torch.bfloat16)\n        self.b = nn.Linear(2, 1).to(torch.float16)\n\n"
        "    def predict_single(self, x):\n        h = self.a(torch.tensor(x, dtype=torch.bfloat16))\n"
        "        return [round(float(h.float().sum()), 3), str(self.a.weight.dtype), str(self.b.weight.dtype)]\n\n"
        "torch.manual_seed(19)\nm_half = Half()",
        "m_half",
        "[[1.0, 2.0], [0.5, -0.5]]",
    ),
    Case(
        "mixed_dtypes_and_frozen_parameters",
        "",
        "class Mixed(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.emb = nn.Embedding(5, 3)\n        self.head = nn.Linear(3, 2).double()\n\n"
        "    def predict_single(self, i):\n        v = self.emb(torch.tensor(i)).double()\n"
        "        return [self.head(v).tolist(), self.emb.weight.requires_grad, str(self.head.bias.dtype)]\n\n"
        "torch.manual_seed(20)\nm_mixed = Mixed()\nm_mixed.emb.weight.requires_grad_(False)",
        "m_mixed",
        "[0, 3, 4]",
    ),
    Case(
        "left_in_train_mode",
        "",
        "class Dropper(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.lin = nn.Linear(4, 4)\n        self.drop = nn.Dropout(0.5)\n\n"
        "    def predict_single(self, x):\n        return self.drop(self.lin(torch.tensor(x))).tolist()\n\n"
        "torch.manual_seed(21)\nm_train = Dropper()\nm_train.train()",
        "m_train",
        "[[1.0, 2.0, 3.0, 4.0]]",
        flags="--sample '[1.0, 2.0, 3.0, 4.0]'",
        expect_output=("train() mode", "model.eval()"),
    ),
    Case(
        "local_module_beside_notebook",
        "import textutils\nfrom textutils import normalise",
        _lin("UsesLocal", 1, "return [normalise(x), textutils.WORDS[len(x) % 2]]")
        + "m_local = UsesLocal()",
        "m_local",
        "['  Hello World ', 'abc']",
        files={
            "textutils.py": "import textsupport\nWORDS = ['even', 'odd']\n"
            "def normalise(text):\n    return textsupport.squash(text.strip().lower())\n",
            "textsupport.py": "def squash(text):\n    return ' '.join(text.split())\n",
        },
        expect_output=("Shipped local files:", "textutils.py", "textsupport.py"),
    ),
    Case(
        "writefile_module",
        "%%writefile featurize.py\ndef features(text):\n    return [float(len(text)), float(text.count(' '))]\n",
        "from featurize import features\n"
        + _lin("UsesWritefile", 2, "return self.lin(torch.tensor(features(x))).tolist()")
        + "torch.manual_seed(22)\nm_wf = UsesWritefile()",
        "m_wf",
        "['a b c', 'longer text here']",
        expect_output=("featurize.py",),
    ),
    Case(
        "local_package_folder",
        "from mypkg.scoring import score\nimport mypkg",
        _lin("UsesPackage", 1, "return [score(x), mypkg.NAME]") + "m_pkg = UsesPackage()",
        "m_pkg",
        "[2, 5]",
        files={
            "mypkg/__init__.py": "NAME = 'mypkg'\n",
            "mypkg/scoring.py": "from mypkg.weights import W\ndef score(x):\n    return x * W\n",
            "mypkg/weights.py": "W = 3\n",
        },
        expect_output=("mypkg/__init__.py", "mypkg/scoring.py"),
    ),
    Case(
        "sklearn_scaler_global",
        "from sklearn.preprocessing import StandardScaler, LabelEncoder\n"
        "SCALER = StandardScaler().fit(iris.data)",
        _lin(
            "Scaled",
            4,
            "z = SCALER.transform([x]).astype(np.float32)\nreturn self.lin(torch.from_numpy(z))[0].tolist()",
        )
        + "torch.manual_seed(23)\nm_scaler = Scaled()",
        "m_scaler",
        "[[5.1, 3.5, 1.4, 0.2], [7.7, 2.6, 6.9, 2.3]]",
    ),
    Case(
        "sklearn_label_encoder_attribute",
        "",
        _lin(
            "Encoded",
            4,
            "i = int(self.lin(torch.tensor(x)).argmax())\nreturn str(self.encoder.inverse_transform([i])[0])",
        )
        + "torch.manual_seed(24)\nm_le = Encoded()\nm_le.encoder = LabelEncoder().fit(['setosa', 'versicolor', 'virginica'])",
        "m_le",
        "[[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]",
    ),
    Case(
        "sklearn_tfidf_pipeline",
        "from sklearn.feature_extraction.text import TfidfVectorizer\nfrom sklearn.linear_model import LogisticRegression\n"
        "from sklearn.pipeline import make_pipeline\n"
        "TEXTS = ['good movie', 'great film', 'bad movie', 'awful film', 'good fun', 'bad day']\n"
        "PIPE = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(TEXTS, [1, 1, 0, 0, 1, 0])",
        "class PipeModel(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.scale = nn.Parameter(torch.ones(1))\n\n    def predict_single(self, text):\n"
        "        p = PIPE.predict_proba([text])[0]\n        return [round(float(p[1]) * float(self.scale), 6), int(PIPE.predict([text])[0])]\n\n"
        "m_pipe = PipeModel()",
        "m_pipe",
        "['good film', 'awful movie', 'unseen words']",
    ),
    Case(
        "hf_tokenizer",
        "from tokenizers import Tokenizer\nfrom tokenizers.models import WordLevel\n"
        "from tokenizers.pre_tokenizers import Whitespace\n"
        "HF_TOK = Tokenizer(WordLevel({'[UNK]': 0, 'hello': 1, 'world': 2}, unk_token='[UNK]'))\n"
        "HF_TOK.pre_tokenizer = Whitespace()",
        _lin("HFModel", 1, "return HF_TOK.encode(x).ids") + "m_hf = HFModel()",
        "m_hf",
        "['hello world', 'hello there']",
    ),
    Case(
        "nested_objects",
        "class Rule:\n    def __init__(self, word, weight):\n        self.word, self.weight = word, weight\n"
        "class RuleSet:\n    def __init__(self, rules):\n        self.rules = rules\n"
        "    def score(self, text):\n        return sum(r.weight for r in self.rules if r.word in text)\n"
        "RULES = RuleSet([Rule('great', 2.0), Rule('bad', -1.5), Rule('ok', 0.5)])",
        _lin(
            "Rules",
            1,
            "s = float(RULES.score(x))\nreturn [s, self.lin(torch.tensor([s])).tolist()]",
        )
        + "torch.manual_seed(25)\nm_rules = Rules()",
        "m_rules",
        "['great but bad', 'ok ok', 'nothing']",
    ),
    Case(
        "shared_references_and_cycles",
        "class Node:\n    def __init__(self, name, parent=None):\n        self.name, self.parent, self.children = name, parent, []\n"
        "        if parent is not None:\n            parent.children.append(self)\n"
        "ROOT = Node('animal')\nCAT = Node('cat', ROOT)\nDOG = Node('dog', ROOT)\n"
        "TAXONOMY = {'cat': CAT, 'dog': DOG, 'root': ROOT}",
        _lin(
            "Taxonomy",
            1,
            "node = TAXONOMY[x]\n"
            "return [node.parent.name if node.parent else None, [c.name for c in node.children],\n"
            "        node.parent is TAXONOMY['root'] if node.parent else True, TAXONOMY['cat'] is CAT]",
        )
        + "m_tax = Taxonomy()",
        "m_tax",
        "['cat', 'root', 'dog']",
    ),
    Case(
        "int_key_label_map_argument",
        "",
        "class LabelNet(nn.Module):\n    def __init__(self, labels):\n        super().__init__()\n"
        "        self.labels = labels\n        self.lin = nn.Linear(2, len(labels))\n\n"
        "    def predict_single(self, x):\n        return self.labels[int(self.lin(torch.tensor(x)).argmax())]\n\n"
        "torch.manual_seed(26)\nm_intkeys = LabelNet({0: 'neg', 1: 'neu', 2: 'pos'})",
        "m_intkeys",
        "[[1.0, 0.0], [0.0, 1.0]]",
    ),
    Case(
        "enum_constructor_argument",
        "",
        "class ModeNet(nn.Module):\n    def __init__(self, mode):\n        super().__init__()\n"
        "        self.mode = mode\n        self.lin = nn.Linear(1, 1)\n\n"
        "    def predict_single(self, x):\n        return [self.mode.name, float(self.lin(torch.tensor([x]))) * self.mode.value]\n\n"
        "torch.manual_seed(27)\nm_mode = ModeNet(Mood.HAPPY)",
        "m_mode",
        "[1.0, -2.0]",
    ),
    Case(
        "slots_and_frozen_dataclass",
        "@dataclass(frozen=True)\nclass Limits:\n    lo: float\n    hi: float\n"
        "class Point2:\n    __slots__ = ('x', 'y')\n    def __init__(self, x, y):\n        self.x, self.y = x, y\n"
        "BOUNDS = Limits(-0.5, 0.5)\nORIGIN = Point2(1.0, -1.0)",
        _lin(
            "Bounded",
            2,
            "v = torch.tensor(x) - torch.tensor([ORIGIN.x, ORIGIN.y])\n"
            "return self.lin(v).clamp(BOUNDS.lo, BOUNDS.hi).tolist()",
        )
        + "torch.manual_seed(28)\nm_bounded = Bounded()",
        "m_bounded",
        "[[1.0, 1.0], [3.0, -3.0]]",
    ),
    Case(
        "device_dtype_and_normalisation_stats",
        "DEVICE = torch.device('cpu')\nDTYPE = torch.float32\nMEAN = iris.data.mean(0)\nSTD = iris.data.std(0)",
        _lin(
            "IrisStats",
            4,
            "z = torch.tensor((np.asarray(x) - MEAN) / STD, dtype=DTYPE, device=DEVICE)\n"
            "return str(SPECIES[int(self.lin(z).argmax())])",
        )
        + "torch.manual_seed(29)\nm_stats = IrisStats()",
        "m_stats",
        "[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]",
    ),
    Case(
        "feature_list_and_config_dict",
        "FEATURES = ['age', 'income', 'score']\nCONFIG = {'clip': 3.0, 'weights': [0.5, 1.0, 2.0], 'names': ('lo', 'mid', 'hi')}",
        _lin(
            "Tabular",
            3,
            "v = torch.tensor([float(x[f]) for f in FEATURES]).clamp(-CONFIG['clip'], CONFIG['clip'])\n"
            "v = v * torch.tensor(CONFIG['weights'])\n"
            "return CONFIG['names'][int(self.lin(v).argmax())]",
        )
        + "torch.manual_seed(30)\nm_tab = Tabular()",
        "m_tab",
        "[{'age': 1, 'income': 2, 'score': -9}, {'age': 0.5, 'income': 0, 'score': 1}]",
    ),
    Case(
        "preprocessing_function_with_object_state",
        "class Normaliser:\n    def __init__(self, data):\n        self.mean = np.asarray(data).mean(0)\n        self.std = np.asarray(data).std(0)\n"
        "    def __call__(self, row):\n        return ((np.asarray(row) - self.mean) / self.std).astype(np.float32)\n"
        "NORM = Normaliser(iris.data)",
        _lin("NormCall", 4, "return self.lin(torch.from_numpy(NORM(x))).tolist()")
        + "torch.manual_seed(31)\nm_normcall = NormCall()",
        "m_normcall",
        "[[5.1, 3.5, 1.4, 0.2], [6.0, 2.2, 5.0, 1.5]]",
    ),
    Case(
        "training_history_and_best_epoch",
        "",
        _lin(
            "Trained",
            2,
            "return [self.lin(torch.tensor(x)).tolist(), self.best_epoch, len(self.history)]",
        )
        + "torch.manual_seed(32)\nm_hist = Trained()\nopt = torch.optim.SGD(m_hist.parameters(), lr=0.1)\n"
        "m_hist.history = []\nfor epoch in range(5):\n    opt.zero_grad()\n"
        "    loss = m_hist.lin(torch.ones(4, 2)).pow(2).mean()\n    loss.backward()\n    opt.step()\n"
        "    m_hist.history.append(float(loss))\nm_hist.best_epoch = int(np.argmin(m_hist.history))",
        "m_hist",
        "[[1.0, 1.0], [0.0, 2.0]]",
    ),
    Case(
        "set_of_stop_words_and_lambda_helper",
        "STOP = {'a', 'the', 'of'}\nclean_words = lambda text: [w for w in text.lower().split() if w not in STOP]",
        _lin(
            "Stops",
            1,
            "words = clean_words(x)\nreturn [words, self.lin(torch.tensor([float(len(words))])).tolist()]",
        )
        + "torch.manual_seed(33)\nm_stop = Stops()",
        "m_stop",
        "['The end of a story', 'nothing here']",
    ),
    Case(
        "recurrent_layers",
        "",
        "class SeqModel(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.gru = nn.GRU(2, 4, batch_first=True)\n"
        "        self.lstm = nn.LSTM(4, 3, batch_first=True)\n\n"
        "    def predict_single(self, x):\n"
        "        out, _ = self.gru(torch.tensor([x], dtype=torch.float32))\n"
        "        out, _ = self.lstm(out)\n"
        "        return [round(v, 5) for v in out[0, -1].tolist()]\n"
        "torch.manual_seed(34)\nm_seq = SeqModel()",
        "m_seq",
        "[[[0.1, 0.2], [0.3, 0.4]], [[1.0, -1.0]]]",
    ),
]


@dataclass(frozen=True)
class Refusal:
    key: str
    setup: str
    model: str
    var: str
    expect: tuple[str, ...]
    forbid: tuple[str, ...] = ("--init",)


REFUSALS: list[Refusal] = [
    Refusal(
        "open_file_global",
        "NOTES = open('notes.txt')",
        _lin("ReadsFile", 1, "return NOTES.name") + "r_file = ReadsFile()",
        "r_file",
        ("'NOTES'", "cell [", "open file", "TextIOWrapper"),
    ),
    Refusal(
        "library_object_global",
        "import argparse\nOPTS = argparse.Namespace(depth=2)",
        _lin("UsesNamespace", 1, "return OPTS.depth") + "r_ns = UsesNamespace()",
        "r_ns",
        ("'OPTS'", "cell [", "argparse.Namespace", "never pickled"),
    ),
    Refusal(
        "lock_attribute_after_construction",
        "import threading",
        _lin("Locked", 1, "return 1") + "r_lock = Locked()\nr_lock.guard = threading.Lock()",
        "r_lock",
        ("model.guard", "_thread.lock", "differs from a freshly built model"),
    ),
    Refusal(
        "class_without_predict_single",
        "",
        "class NoPredict(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.lin = nn.Linear(1, 1)\n\nr_nopred = NoPredict()",
        "r_nopred",
        ("'NoPredict' has no predict_single", "def predict_single(self, input)"),
        forbid=("--class", "--init", "name of the class"),
    ),
    Refusal(
        "module_instance_global",
        "ENCODER = nn.Linear(2, 2)",
        _lin("UsesEncoder", 2, "return ENCODER(torch.tensor(x)).tolist()")
        + "r_enc = UsesEncoder()",
        "r_enc",
        ("'ENCODER'", "cell [", "nn.Module", "__init__"),
    ),
]
