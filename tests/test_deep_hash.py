"""Deep code hashing: a stage's hash covers the helpers, classes and constants of the user's
own code it uses, transitively, and nothing else.

What reruns is checked in fresh processes (cold run, edit, warm run); the shape of the
helper list and library references are checked in-process.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import linecache
import logging
import sys

import pandas as pd
import pytest

import lwdp.hashing.code
from lwdp import stage
from lwdp.hashing.code import deep_code_digest

_module_ids = itertools.count()

HELPERS = '''
FACTOR = 2


def scale(x):
    return x * FACTOR


def shift(x, by=7):
    return x + by
'''

PIPELINE = '''
import json
import sys

sys.path.insert(0, ".")

import helpers
from helpers import shift
from lwdp import stage

OFFSET = 10
LIMIT = 3


def unrelated(x):
    return x - 1


def local_helper(x):
    return x + OFFSET


def make_adder(n):
    def add(x):
        return x + n

    return add


add_some = make_adder(5)


def a_cycle(x):
    return b_cycle(x - 1) if x > 0 else 0


def b_cycle(x):
    return a_cycle(x - 1) if x > 0 else 1


@stage(n=1, cache=True)
def stg_local(n):
    return local_helper(n)


@stage(n=1, cache=True)
def stg_module(n):
    return helpers.scale(n)


@stage(n=1, cache=True)
def stg_imported(n):
    return shift(n)


@stage(n=1, cache=True)
def stg_closure(n):
    return add_some(n)


@stage(n=3, cache=True)
def stg_cycle(n):
    return a_cycle(n)


@stage(n=1, cache=True)
def stg_plain(n):
    return n


@stage(n=1, cache=True)
def stg_direct(n, k=2):
    return n * LIMIT + k


ALL = [stg_local, stg_module, stg_imported, stg_closure, stg_cycle, stg_plain, stg_direct]
if __name__ == "__main__":
    print("RESULTS", json.dumps([s() for s in ALL]))
    print("HELPERS", json.dumps({s.name.rsplit(".", 1)[-1]: s.code.helpers for s in ALL}))
'''

# Asks each stage why it would rerun, without running anything.
EXPLAIN = '''
import json
import pipeline

print("EXPLAIN", json.dumps({s.name.rsplit(".", 1)[-1]: [s.explain().state, s.explain().reasons] for s in pipeline.ALL}))
'''

ALL_STAGES = {"stg_local", "stg_module", "stg_imported", "stg_closure", "stg_cycle", "stg_plain", "stg_direct"}

# (file, old text, new text, {stage that must rerun: why}; every other stage is a hit)
# A default argument's value is also written in the function's code: both parts changed.
EDITS = {
    "same-module helper": ("pipeline.py", "return x + OFFSET", "return x + OFFSET + 1", {
        "stg_local": ["helper `local_helper` in pipeline.py changed"],
    }),
    "helper in another local module": ("helpers.py", "return x * FACTOR", "return x * FACTOR * 3", {
        "stg_module": ["helper `scale` in helpers.py changed"],
    }),
    "module constant read by a helper": ("pipeline.py", "OFFSET = 10", "OFFSET = 11", {
        "stg_local": ["module constant `OFFSET` changed (in helper `local_helper` in pipeline.py)"],
    }),
    "constant of another local module": ("helpers.py", "FACTOR = 2", "FACTOR = 4", {
        "stg_module": ["module constant `FACTOR` changed (in helper `scale` in helpers.py)"],
    }),
    "closure value": ("pipeline.py", "make_adder(5)", "make_adder(6)", {
        "stg_closure": ["captured value `n` changed (in helper `make_adder.<locals>.add` in pipeline.py)"],
    }),
    "helper's default argument": ("helpers.py", "by=7", "by=8", {
        "stg_imported": [
            "helper `shift` in helpers.py changed", "default of argument `by` changed (in helper `shift` in helpers.py)",
        ],
    }),
    "helper inside a cycle": ("pipeline.py", "else 1", "else 2", {"stg_cycle": ["helper `b_cycle` in pipeline.py changed"]}),
    "constant the stage reads": ("pipeline.py", "LIMIT = 3", "LIMIT = 4", {"stg_direct": ["module constant `LIMIT` changed"]}),
    "stage's default argument": ("pipeline.py", "k=2", "k=5", {"stg_direct": ["code changed", "default of argument `k` changed"]}),
    "stage's own code": ("pipeline.py", "return local_helper(n)", "return local_helper(n) * 2", {"stg_local": ["code changed"]}),
    "parameter": ("pipeline.py", "@stage(n=3, cache=True)", "@stage(n=4, cache=True)", {"stg_cycle": ["parameter `n` changed 3 → 4"]}),
    "unrelated function": ("pipeline.py", "return x - 1", "return x - 2", {}),
    "unrelated function added": ("helpers.py", "def shift", "def unused():\n    return 0\n\n\ndef shift", {}),
    "helper reformatted": (
        "pipeline.py",
        "def local_helper(x):\n    return x + OFFSET",
        'def local_helper(\n    x,\n):\n    """Add the offset."""\n    # the offset\n\n    return (x +\n            OFFSET)  # why not',
        {},
    ),
    "other module's helper reformatted": (
        "helpers.py",
        "def scale(x):\n    return x * FACTOR",
        "def scale(x) :  # scale it\n\n    return x*FACTOR",
        {},
    ),
}


def _helpers_of(run) -> dict[str, dict[str, str]]:
    return json.loads(next(line for line in run.stdout.splitlines() if line.startswith("HELPERS ")).split(" ", 1)[1])


def _explained(project) -> dict[str, list]:
    run = project.run("explain.py")
    return json.loads(next(line for line in run.stdout.splitlines() if line.startswith("EXPLAIN ")).split(" ", 1)[1])


@pytest.mark.parametrize("what", list(EDITS))
def test_an_edit_reruns_exactly_the_stages_that_use_it_and_says_why(project, what):
    path, old, new, expected = EDITS[what]
    project.write("helpers.py", HELPERS)
    project.write("pipeline.py", PIPELINE)
    project.write("explain.py", EXPLAIN)
    assert _explained(project) == {name: ["never computed", ["never computed"]] for name in ALL_STAGES}
    cold = project.run()
    assert cold.ran() == ALL_STAGES
    source = {"helpers.py": HELPERS, "pipeline.py": PIPELINE}[path]
    assert source.count(old) == 1, what
    project.edit(path, source.replace(old, new))
    # explain() says what will rerun and why, before anything runs ...
    explained = _explained(project)
    assert explained == {
        name: ["stale", expected[name]] if name in expected else ["fresh", []] for name in ALL_STAGES
    }, what
    # ... and the run reruns exactly those stages, logging the same reason.
    warm = project.run()
    assert warm.ran() == set(expected), what
    assert {name for name, outcome in warm.outcomes().items() if outcome == "hit"} == ALL_STAGES - set(expected)
    assert {e["stage"].rsplit(".", 1)[-1]: e["reason"] for e in warm.events if e["reason"]} == {
        name: "; ".join(reasons) for name, reasons in expected.items()
    }
    # The helper list names what changed: only the edited helper's digest differs.
    before, after = _helpers_of(cold), _helpers_of(warm)
    assert set(before) == set(after) == ALL_STAGES
    for name in ALL_STAGES - set(expected):
        assert after[name] == before[name], (what, name)


def test_helper_list_names_every_helper_and_only_the_user_code(project):
    project.write("helpers.py", HELPERS)
    project.write("pipeline.py", PIPELINE)
    helpers = _helpers_of(project.run())
    assert set(helpers["stg_local"]) == {"pipeline.local_helper"}
    assert set(helpers["stg_module"]) == {"helpers.scale"}
    assert set(helpers["stg_imported"]) == {"helpers.shift"}
    assert set(helpers["stg_closure"]) == {"pipeline.make_adder.<locals>.add"}
    assert set(helpers["stg_cycle"]) == {"pipeline.a_cycle", "pipeline.b_cycle"}
    assert helpers["stg_plain"] == {}
    # Stable across processes.
    assert _helpers_of(project.run()) == helpers


def test_the_changed_helper_can_be_named(project):
    project.write("helpers.py", HELPERS)
    project.write("pipeline.py", PIPELINE)
    before = _helpers_of(project.run())["stg_cycle"]
    project.edit("pipeline.py", PIPELINE.replace("else 1", "else 2"))
    after = _helpers_of(project.run())["stg_cycle"]
    assert {name for name in before if before[name] != after[name]} == {"pipeline.b_cycle"}


def load_module(project, relpath: str, source: str, name: str | None = None):
    """Write ``source`` to ``relpath`` (editing it as a user would if it exists) and import it."""
    path = project.edit(relpath, source) if (project.root / relpath).exists() else project.write(relpath, source)
    spec = importlib.util.spec_from_file_location(name or f"lwdp_deep_test_{next(_module_ids)}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_helper_cycle_hashes_without_recursion_error(project):
    module = load_module(
        project,
        "cycle.py",
        "from lwdp import stage\n\n"
        "def a(x):\n    return b(x)\n\n"
        "def b(x):\n    return a(x)\n\n"
        "@stage(n=1)\ndef s(n):\n    return a(n)\n",
    )
    assert len(module.s.code.helpers) == 2
    assert deep_code_digest(module.a).digest == deep_code_digest(module.a).digest


def _record_calls(monkeypatch, owner, name: str, calls: list) -> None:
    """Append the first argument of every call of ``owner.name`` to ``calls``."""
    real = getattr(owner, name)

    def recorded(first, *args, **kwargs):
        calls.append(first)
        return real(first, *args, **kwargs)

    monkeypatch.setattr(owner, name, recorded)


def test_library_code_is_named_not_hashed(project, monkeypatch):
    project.write("raw/in.csv", "a\n1\n")
    texts, parsed, files = [], [], []  # functions whose text was taken; whose source was parsed; files read
    _record_calls(monkeypatch, lwdp.hashing.code, "_function_digest", texts)
    _record_calls(monkeypatch, lwdp.hashing.code, "_read_function_digest", parsed)
    _record_calls(monkeypatch, linecache, "updatecache", files)

    @stage(src="raw/in.csv")
    def load(src):
        frame = pd.read_csv(src)
        return pd.concat([frame, pd.DataFrame({"a": [len(frame)]})])

    # pd.read_csv, pd.concat and pd.DataFrame are named: no pandas function is read.
    assert texts == parsed == [load.func]
    assert set(files) <= {__file__}
    texts.clear(), parsed.clear(), files.clear()
    digests = {deep_code_digest(load.func).digest for _ in range(20)}
    assert len(digests) == 1
    assert texts == [load.func] * 20 and parsed == [] and files == []  # memoized: nothing read again
    assert load.code.helpers == {}
    assert load.code.digest in digests


CLASSES = '''
import enum
import functools
import re

LIMIT = 3
WORD = re.compile("[a-z]+")


class Mode(enum.Enum):
    FAST = 1
    SLOW = 2


class Scaler:
    OFFSET = 2

    def __init__(self, factor):
        self.factor = factor

    def apply(self, x):
        return x * self.factor + self.OFFSET


def power(x, exponent):
    return x ** exponent


scaler = Scaler(4)
apply = scaler.apply
square = functools.partial(power, exponent=2)
TABLE = {"a": [1, 2], "b": (LIMIT, "x")}
'''


@pytest.mark.parametrize(
    "old, new",
    [
        ("OFFSET = 2", "OFFSET = 5"),  # class-level constant
        ("x * self.factor", "x * self.factor * 1"),  # method body
        ("Scaler(4)", "Scaler(5)"),  # state of the instance behind a bound method
        ("exponent=2", "exponent=3"),  # partial keywords
        ("x ** exponent", "x ** exponent + 0"),  # partial's function
        ("SLOW = 2", "SLOW = 3"),  # enum member
        ('"b": (LIMIT, "x")', '"b": (LIMIT, "y")'),  # dict constant
        ('"[a-z]+"', '"[a-z]*"'),  # compiled regular expression
    ],
)
def test_classes_bound_methods_partials_enums_and_containers_count(project, old, new):
    body = (
        "from lwdp import stage\nfrom mod import apply, square, Mode, TABLE, WORD\n\n"
        "@stage(n=1)\ndef s(n):\n    return apply(n) + square(n) + Mode.SLOW.value + len(TABLE) + len(WORD.findall('ab'))\n"
    )

    def digest(source: str) -> str:
        mod = load_module(project, "mod.py", source, name="mod")  # enum values hash their module's name
        sys.modules["mod"] = mod
        try:
            return load_module(project, "pipeline.py", body).s.code_digest
        finally:
            del sys.modules["mod"]

    assert CLASSES.count(old) == 1
    assert digest(CLASSES) == digest(CLASSES)
    assert digest(CLASSES.replace(old, new)) != digest(CLASSES)


def test_unhashable_constant_is_named_by_type_with_a_warning(project):
    project.write(
        "pipeline.py",
        "import logging\nlogging.basicConfig(level=logging.WARNING)\nfrom lwdp import stage\n\n"
        "class Token:\n    __slots__ = ('x',)\n\nTOKEN = Token()\n\n"
        "@stage(n=1)\ndef s(n):\n    return (TOKEN, n)\n\nprint(s.hash)\n",
    )
    first, second = project.run(), project.run()
    assert first.stdout == second.stdout
    assert "reads 'TOKEN': a Token lwdp cannot hash" in first.stderr


def test_library_objects_such_as_a_logger_are_named_by_type_silently(project, caplog):
    caplog.set_level(logging.WARNING, logger="lwdp")
    module = load_module(
        project,
        "logged.py",
        "import logging, threading\nfrom lwdp import stage\n\nlog = logging.getLogger('x')\nLOCK = threading.Lock()\n\n"
        "@stage(n=1)\ndef s(n):\n    log.info('hi')\n    with LOCK:\n        return n\n",
    )
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert deep_code_digest(module.s.func).digest == module.s.code_digest


def test_unresolvable_reference_is_ignored(project):
    project.write("helpers.py", HELPERS)
    module = load_module(
        project,
        "dynamic.py",
        "import sys\nsys.path.insert(0, '.')\nimport helpers\nfrom lwdp import stage\n\n"
        "@stage(n=1)\ndef s(n):\n    return getattr(helpers, 'sc' + 'ale')(n)\n",
    )
    assert module.s.code.helpers == {}


def test_code_digest_caches_stay_bounded_in_a_long_session():
    """A notebook makes new functions each time a cell runs again: the digests kept per
    function and per file stay under their bound, and one forgotten is computed again alike."""
    from lwdp.hashing import code, references
    from lwdp.hashing.lru import CODE_CACHE_SIZE

    def cell(i: int):
        namespace: dict = {}
        exec(compile(f"def stg_cell(df):\n    return df + {i % 7}\n", f"<cell-{i}>", "exec"), namespace)
        return namespace["stg_cell"]

    first = code.deep_code_digest(cell(0)).digest
    for i in range(1, CODE_CACHE_SIZE + 200):
        code.deep_code_digest(cell(i))
    assert len(code._FUNCTION_DIGESTS) <= CODE_CACHE_SIZE and len(references._REFERENCES) <= CODE_CACHE_SIZE
    assert len(code._MODULE_FUNCTIONS) <= CODE_CACHE_SIZE and references.is_user_file.cache_info().currsize <= CODE_CACHE_SIZE
    assert code.deep_code_digest(cell(0)).digest == first == code.deep_code_digest(cell(7)).digest
