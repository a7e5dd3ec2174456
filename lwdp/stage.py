"""The `stage` decorator: binds each keyword to a raw input, an upstream stage or a parameter.

It sits at the top of the flow: calling a stage runs it (`lwdp.run`), which hashes it
(`lwdp.hashing`) and stores its result (`lwdp.store`); those layers know a stage as a
`lwdp.graph.StageNode`."""

from __future__ import annotations

import copy
import enum
import functools
import inspect
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import InputBindingError
from .formats import Format, get_format
from .graph import Input, StageNode, qualified_name, register
from .hashing.code import CodeDigest, deep_code_digest, pinned_code_digest
from .hashing.params import param_digest
from .partitions import COMBINATION_CODE, Partition, combination_inputs, combine, list_partitions, not_partitionable
from .hashing.url_inputs import is_url

if TYPE_CHECKING:
    from .run.status import StageStatus


def _bind_input(stage_name: str, name: str, value: Any) -> Input:
    if isinstance(value, Stage):
        return Input(name, "stage", value)
    if isinstance(value, (str, os.PathLike)) and not isinstance(value, enum.Enum):
        return Input(name, "raw", value)
    where = f"stage '{stage_name}', input '{name}'"
    if callable(value) and not isinstance(value, type):
        raise InputBindingError(
            f"{where}: {value!r} is a function, not a stage; decorate it with @stage "
            "to use its result, or pass a path or a parameter"
        )
    try:
        digest = param_digest(value)
    except TypeError as exc:
        raise InputBindingError(f"{where}: {exc}") from None
    return Input(name, "param", copy.deepcopy(value), digest)


def _accepted_names(func: Callable[..., Any], stage_name: str, inputs: dict[str, Input]) -> frozenset[str]:
    """Which inputs the function takes as keywords; check that every parameter is bound."""
    params = inspect.signature(func).parameters.values()
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    for p in params:
        if p.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise InputBindingError(f"stage '{stage_name}': parameter '{p.name}' is positional-only; inputs are passed by keyword")
        if p.name not in inputs and p.default is inspect.Parameter.empty and p.kind not in variadic:
            raise InputBindingError(f"stage '{stage_name}': parameter '{p.name}' has no input; bind it in @stage({p.name}=...)")
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return frozenset(inputs)
    named = {p.name for p in params if p.kind not in variadic}
    unknown = sorted(set(inputs) - named)
    if named and unknown:
        raise InputBindingError(
            f"stage '{stage_name}': inputs {unknown} are not parameters of {func.__name__}(); "
            "add them to its signature or take **kwargs"
        )
    return frozenset(inputs) & named


def _check_version(stage_name: str, func: Callable[..., Any], version: Any) -> None:
    if "version" in inspect.signature(func).parameters:
        raise InputBindingError(
            f"stage '{stage_name}': `version=` pins the stage's version and binds no input; "
            "rename the function's parameter `version` and bind it by its new name"
        )
    if not (isinstance(version, str) and version):
        raise InputBindingError(f"stage '{stage_name}': version={version!r} must be a non-empty string, such as version=\"2\"")


def _environment_names(stage_name: str, func: Callable[..., Any], env: Any) -> tuple[str, ...]:
    if "env" in inspect.signature(func).parameters:
        raise InputBindingError(
            f"stage '{stage_name}': `env=` names the environment variables the stage depends on and binds no "
            "input; rename the function's parameter `env` and bind it by its new name"
        )
    names = [env] if isinstance(env, str) else env
    if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) and name for name in names):
        raise InputBindingError(f"stage '{stage_name}': env={env!r} must list variable names, such as env=[\"API_REGION\"]")
    return tuple(sorted(set(names)))


class Stage(StageNode):
    """A pipeline stage: call it to get its result, running or loading ancestors as needed."""

    def __init__(
        self, func: Callable[..., Any], inputs: dict[str, Any], cache: bool, cache_format: str | None,
        version: str | None = None, partition_by: str | None = None, env: Any = None,
    ) -> None:
        functools.update_wrapper(self, func)
        self.func = func
        self.name = qualified_name(func)
        self.module = func.__module__
        self.cache = cache
        self.format: Format | None = get_format(cache_format) if cache_format is not None else None
        if version is not None:
            _check_version(self.name, func, version)
        if env is not None:
            self.env = _environment_names(self.name, func, env)
        bound = {name: _bind_input(self.name, name, value) for name, value in sorted(inputs.items())}
        self.inputs: tuple[Input, ...] = tuple(bound.values())
        self.passed_inputs = _accepted_names(func, self.name, bound)
        # Now, not on first use: the source file (or a helper's) may be edited while this
        # process runs.
        self.code: CodeDigest = deep_code_digest(func) if version is None else pinned_code_digest(self.name, version)
        self.code_digest = self.code.digest
        self.partition_by = partition_by
        if partition_by is not None:
            self._partition(partition_by, bound)
        register(self)

    def _partition(self, input_name: str, bound: dict[str, Input]) -> None:
        """Make this stage the combination of its per-file partitions (`lwdp.partitions`):
        the function, caching and code go to the partitions; the inputs come from the files
        each run finds (`refresh`)."""
        raw = bound.get(input_name)
        if raw is None or raw.kind != "raw" or is_url(raw.value) or os.path.isfile(raw.value):  # a directory may come later
            raise not_partitionable(self.name, input_name, raw)
        self.declared_inputs = self.inputs
        self.partition_func, self.partition_cache, self.partition_code = self.func, self.cache, self.code
        self.partition_passed = self.passed_inputs
        self.known_partitions: dict[str, Partition] = {}
        self.func, self.cache, self.code, self.code_digest = combine, False, COMBINATION_CODE, COMBINATION_CODE.digest
        self.inputs, self.passed_inputs = (), frozenset()

    def refresh(self) -> None:
        if self.partition_by is not None:
            self.partitions = list_partitions(self)
            self.inputs = combination_inputs(self.partitions)
            self.passed_inputs = frozenset(inp.name for inp in self.inputs)

    @property
    def hash(self) -> str:
        """The stage hash as it stands now (reads raw files only when their memo is stale)."""
        from .run.call import current_hashes

        return current_hashes(self)[self]

    def explain(self) -> StageStatus:
        """Whether calling the stage now would load its cached result, and if not, why it
        would rerun ("parameter `threshold` changed 0.5 → -0.5", "helper `scale` in
        helpers.py changed", ...), without running anything. ``str()`` of it is a sentence."""
        from .run.status import pipeline_status

        return pipeline_status(self)[-1]

    def recompute(self) -> Any:
        """Compute this stage now even if it is cached (its upstreams load from the cache as
        usual), replace its artifact and return the result. If the result differs from the
        one it replaces, the artifacts computed from that one are removed, so the stages
        below recompute when next called; if it is the same, they stay (early cutoff)."""
        from .run.call import run_stage

        return run_stage(self, forced=frozenset({self}))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:
            raise InputBindingError(f"stage '{self.name}' takes no call arguments; bind its inputs in @stage(...)")
        from .run.call import run_stage

        return run_stage(self)

    def __repr__(self) -> str:
        return f"<lwdp stage {self.name}>"

    def _repr_html_(self) -> str:
        """In Jupyter: the picture of its pipeline (`lwdp.run.report`), as ``lwdp report`` draws it."""
        from .run.report import pipeline_html

        return pipeline_html(self, page=False)


def stage(
    *, cache: bool = False, cache_format: str | None = None, version: str | None = None, partition_by: str | None = None,
    env: list[str] | tuple[str, ...] | None = None, **inputs: Any,
) -> Callable[[Callable[..., Any]], Stage]:
    """Make a function a pipeline stage.

    Every keyword but ``cache``, ``cache_format``, ``version``, ``partition_by`` and ``env`` binds an input of that
    name: a ``str`` or path is a raw input (a file, a directory or a glob), a stage is an
    upstream, and anything else is a parameter that is part of the hash. ``version``: the
    stage's code (helpers included) counts by this string instead of its source, so an edit
    keeps the cache until the string changes. ``partition_by``: the raw input (a glob or a
    directory) whose files are each a call of the function, cached on its own; the stage's
    result combines them (`lwdp.partitions`). ``env``: the environment variables the stage
    depends on (``["API_REGION"]``), whose values its hash covers (lwdp can't see a
    stage read one).

    :raises InputBindingError: an input that can't be bound or hashed stably.
    :raises UnknownFormatError: ``cache_format`` is not a format lwdp can write and read.
    """

    def decorate(func: Callable[..., Any]) -> Stage:
        return Stage(func, inputs, cache, cache_format, version, partition_by, env)

    return decorate
