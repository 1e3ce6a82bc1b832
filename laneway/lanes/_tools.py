"""The tool registry: ``@tool`` specs, parameter declarations and validation before anything runs."""

from __future__ import annotations

import importlib
import inspect
import logging
import threading
import typing
from typing import Any, Callable, Iterable, Mapping, TypeVar

import attrs

from laneway.errors import ConfigError, ToolNotFound, ToolParameterError
from laneway.lanes._config import Priority, as_priority

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# JSON Schema type names accepted as a parameter's ``type``, and the Python types they mean.
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list, tuple),
    "object": (dict,),
}
_TOKEN_PARAM = "cancel_token"


def _accepts(types: tuple[type, ...], value: Any) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # True is an int to Python, not to a tool's caller
    if float in types and isinstance(value, int):
        return True
    return isinstance(value, types)


_UNRESOLVED: Any = object()


@attrs.frozen
class ToolParam:
    """One declared parameter of a tool.

    Attributes:
        name: keyword the tool receives it under.
        type: a Python type (``int``), a JSON Schema name (``"integer"``), or None for any value.
        description: for humans and LLM tool schemas.
        required: calls without it fail with ``ToolParameterError``.

    Example:
        >>> ToolParam("query", "string", "what to search for").python_types
        (<class 'str'>,)
    """

    name: str
    type: Any = None
    description: str = ""
    required: bool = True
    _types: Any = attrs.field(init=False, default=_UNRESOLVED, eq=False, repr=False)

    @property
    def python_types(self) -> tuple[type, ...] | None:
        """The accepted Python types, or None when any value goes."""
        t = self.type
        if t is None or t is Any or t == "any":
            return None
        if isinstance(t, str):
            try:
                return _JSON_TYPES[t]
            except KeyError:
                raise ConfigError(f"parameter {self.name!r}: unknown type name {t!r}; use one of {sorted(_JSON_TYPES)}") from None
        if t is float:
            return (int, float)
        origin = typing.get_origin(t)
        if isinstance(origin, type):
            return (origin,)
        if isinstance(t, type):
            return (t,)
        return None  # unions and other typing constructs: not checked

    def check(self, tool: str, value: Any) -> None:
        """Raise ToolParameterError if ``value`` has the wrong type."""
        # Resolved once (every submit validates); a bad type name still raises on each use.
        types = self._types
        if types is _UNRESOLVED:
            types = self.python_types
            object.__setattr__(self, "_types", types)
        if types is not None and not _accepts(types, value):
            wanted = self.type if isinstance(self.type, str) else "/".join(t.__name__ for t in types)
            raise ToolParameterError(
                f"tool {tool!r}: parameter {self.name!r} must be {wanted}, got {type(value).__name__} {value!r:.60}"
            )


def _as_param(item: Any) -> ToolParam:
    if isinstance(item, ToolParam):
        return item
    if isinstance(item, Mapping):
        try:
            return ToolParam(**item)
        except TypeError as exc:
            raise ConfigError(f"bad parameter declaration {dict(item)!r}: {exc}") from None
    raise ConfigError(f"a parameter must be a ToolParam or a dict, got {item!r}")


def _params_from_signature(fn: Callable[..., Any], signature: Mapping[str, inspect.Parameter]) -> tuple[ToolParam, ...]:
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    return tuple(
        ToolParam(p.name, hints.get(p.name), "", p.default is p.empty)
        for p in signature.values()
        if p.name != _TOKEN_PARAM and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY)
    )


@attrs.frozen
class ToolSpec:
    """What the registry knows about a tool; :func:`tool` builds it.

    Attributes:
        name: registry name; persisted commands refer to the tool by it.
        fn: the function (sync or ``async def``).
        description, category, capabilities: for discovery and routing.
        parameters: declared parameters, checked at submit.
        parallel_allowed: may run in :meth:`SessionLane.execute_parallel`.
        timeout: default per-call timeout in seconds.
        priority: default :class:`Priority` of its commands.
        cpu_bound: runs on the orchestrator's process pool instead of a thread.
        preemptible: its running commands may be preempted by higher-priority work.
        module: the defining module, imported when a persisted command needs the tool.
    """

    name: str
    fn: Callable[..., Any] = attrs.field(eq=False, repr=False)
    description: str = ""
    parameters: tuple[ToolParam, ...] = ()
    capabilities: frozenset[str] = frozenset()
    category: str = "general"
    parallel_allowed: bool = False
    timeout: float | None = None
    priority: Priority | None = None
    cpu_bound: bool = False
    preemptible: bool = False
    is_async: bool = False
    takes_token: bool = False
    module: str = ""
    accepts_extra: bool = False  #: parameters were inferred from a signature with ``**kwargs``
    _declared: frozenset[str] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_declared", frozenset(p.name for p in self.parameters))

    def validate(self, params: Mapping[str, Any]) -> None:
        """Raise ToolParameterError naming the first missing, unknown or wrongly-typed parameter."""
        declared = self._declared
        if not self.accepts_extra and not declared.issuperset(params):  # one C call for the common case
            for key in params:
                if key not in declared:
                    raise ToolParameterError(f"tool {self.name!r}: unknown parameter {key!r}; it takes {sorted(declared)}")
        for p in self.parameters:
            name = p.name
            if name in params:
                # Every submit validates: a value of exactly an accepted type passes without a call.
                types = p._types
                if types is None or (types is not _UNRESOLVED and type(params[name]) in types):
                    continue
                p.check(self.name, params[name])
            elif p.required:
                raise ToolParameterError(f"tool {self.name!r}: missing required parameter {name!r}")

    def schema(self) -> dict[str, Any]:
        """A JSON-Schema-like description (for LLM tool lists)."""
        props = {}
        for p in self.parameters:
            t = p.type if isinstance(p.type, str) else next(
                (k for k, v in _JSON_TYPES.items() if p.python_types and p.python_types[-1] in v), "any"
            )
            props[p.name] = {"type": t, "description": p.description}
        return {
            "name": self.name,
            "description": self.description,
            "parameters": {"type": "object", "properties": props, "required": [p.name for p in self.parameters if p.required]},
        }


def make_spec(fn: Callable[..., Any], *, name: str | None = None, description: str | None = None,
              parameters: Iterable[Any] | Mapping[str, Any] | None = None, capabilities: Iterable[str] = (),
              category: str = "general", parallel_allowed: bool = False, timeout: float | None = None,
              priority: Priority | int | None = None, cpu_bound: bool = False, preemptible: bool = False) -> ToolSpec:
    """Build a :class:`ToolSpec` for ``fn`` (see :func:`tool` for the options)."""
    if not callable(fn):
        raise ConfigError(f"a tool must be callable, got {fn!r}")
    try:
        signature: Mapping[str, inspect.Parameter] = inspect.signature(fn).parameters
        known = True
    except (TypeError, ValueError):  # some builtins have no signature: nothing to check against
        signature, known = {}, False
    if parameters is None:
        params = _params_from_signature(fn, signature)
    elif isinstance(parameters, Mapping):
        params = tuple(ToolParam(k, v) if not isinstance(v, Mapping) else _as_param({"name": k, **v}) for k, v in parameters.items())
    else:
        params = tuple(_as_param(p) for p in parameters)
    for p in params:
        p.python_types  # noqa: B018 - raises ConfigError for an unknown type name now, not at the first call
    if priority is not None:
        priority = as_priority(priority, "tool priority")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ConfigError(f"tool timeout must be a number > 0 or None, got {timeout!r}")
    is_async = inspect.iscoroutinefunction(fn)
    if cpu_bound and is_async:
        raise ConfigError(f"tool {name or fn.__name__!r}: an async def tool cannot be cpu_bound (the pool runs plain functions)")
    takes_token = _TOKEN_PARAM in signature
    accepts_extra = parameters is None and (not known or any(p.kind is p.VAR_KEYWORD for p in signature.values()))
    spec_name: str = name if name else getattr(fn, "__name__", repr(fn))
    return ToolSpec(
        name=spec_name,
        fn=fn,
        description=description if description is not None else inspect.getdoc(fn) or "",
        parameters=params,
        capabilities=frozenset(capabilities),
        category=category,
        parallel_allowed=parallel_allowed,
        timeout=timeout,
        priority=priority,
        cpu_bound=cpu_bound,
        preemptible=preemptible,
        is_async=is_async,
        takes_token=takes_token,
        accepts_extra=accepts_extra,
        module=getattr(fn, "__module__", "") or "",
    )


class ToolRegistry:
    """Tools by name. A manager's registry falls back to its ``parent`` (the default registry).

    Example:
        >>> reg = ToolRegistry()
        >>> spec = reg.register(lambda text: text.upper(), name="shout")
        >>> reg.get("shout").parameters[0].name
        'text'
    """

    def __init__(self, parent: ToolRegistry | None = None) -> None:
        self._parent = parent
        self._lock = threading.Lock()
        self._tools: dict[str, ToolSpec] = {}
        #: ``find(name)``: the spec registered here under ``name``, else None (the parent is not
        #: asked; :meth:`get` does). The dict's own ``get``: a lookup without a Python frame.
        self.find: Callable[[str], ToolSpec | None] = self._tools.get

    def register(self, fn: Callable[..., Any] | ToolSpec, **options: Any) -> ToolSpec:
        """Add a tool (a function with options as for :func:`tool`, or a ready spec); returns its spec.

        Raises:
            ConfigError: the name belongs to a different function.
        """
        spec = fn if isinstance(fn, ToolSpec) else make_spec(fn, **options)
        with self._lock:
            old = self._tools.get(spec.name)
            # Re-importing a module re-registers its tools: same module and qualname is the
            # same tool, unless the name is a lambda's or a local's ("<lambda>", "<locals>").
            same = _qualified(old.fn) == _qualified(spec.fn) and "<" not in _qualified(spec.fn) if old else True
            if old is not None and old.fn is not spec.fn and not same:
                raise ConfigError(f"tool name {spec.name!r} is already taken by {_qualified(old.fn)}")
            self._tools[spec.name] = spec
        return spec

    def unregister(self, name: str) -> None:
        """Remove a tool from this registry (not from its parent)."""
        with self._lock:
            self._tools.pop(name, None)

    def get(self, name: str) -> ToolSpec:
        """The tool's spec; raises :class:`~laneway.errors.ToolNotFound`."""
        spec = self._tools.get(name)
        if spec is not None:
            return spec
        if self._parent is not None:
            return self._parent.get(name)
        raise ToolNotFound(f"no tool named {name!r} is registered")

    def resolve(self, name: str, module: str = "") -> ToolSpec:
        """Like :meth:`get`, but first imports ``module`` (where the tool was defined) if needed."""
        try:
            return self.get(name)
        except ToolNotFound:
            if not module or module == "__main__":
                raise
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise ToolNotFound(f"tool {name!r}: importing its module {module!r} failed: {exc!r}") from exc
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools or (self._parent is not None and name in self._parent)

    def specs(self, *, category: str | None = None, capability: str | None = None) -> list[ToolSpec]:
        """Every tool (own first, then the parent's), optionally only one category or capability."""
        seen: dict[str, ToolSpec] = {}
        if self._parent is not None:
            seen.update((s.name, s) for s in self._parent.specs())
        with self._lock:
            seen.update(self._tools)
        return [
            s for s in seen.values()
            if (category is None or s.category == category) and (capability is None or capability in s.capabilities)
        ]

    def names(self) -> list[str]:
        """Every registered tool name, sorted."""
        return sorted(s.name for s in self.specs())


def _qualified(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


#: Tools declared with ``@tool`` at import time; every manager's registry falls back to it.
default_registry = ToolRegistry()


def tool(fn: F | None = None, *, registry: ToolRegistry | None = None, **options: Any) -> Any:
    """Declare a function as a tool and register it (in ``default_registry`` unless ``registry=``).

    Usable bare (``@tool``) or with options: ``name``, ``description``,
    ``parameters`` (ToolParam records, dicts with name/type/description/required,
    or a name->type mapping; inferred from the signature when omitted),
    ``capabilities``, ``category``, ``parallel_allowed`` (default False),
    ``timeout``, ``priority`` (a :class:`Priority`, or an int 0..4 on its
    scale), ``cpu_bound`` (run on the process pool) and
    ``preemptible``. The function itself is returned unchanged (so it still
    pickles by reference for the pool), with its spec as ``fn.__laneway_tool__``.

    Example:
        >>> @tool(description="Add two numbers", parallel_allowed=True, registry=ToolRegistry())
        ... def add(a: int, b: int) -> int:
        ...     return a + b
        >>> add.__laneway_tool__.parameters[0]
        ToolParam(name='a', type=<class 'int'>, description='', required=True)
    """

    def decorate(f: F) -> F:
        spec = (registry or default_registry).register(f, **options)
        f.__laneway_tool__ = spec  # type: ignore[attr-defined]
        return f

    return decorate(fn) if fn is not None else decorate
