"""Every function of the extension states its signature (inspect.signature, help(), Jupyter's
Shift-Tab): the C docstrings carry a __text_signature__. These tests hold each stated signature
to what the function's argument parser really accepts, so a docstring cannot drift from the
code. (tests/test_stubs.py then holds the type stubs to the same signatures.)"""
import inspect

import pytest

import pyalloc
from pyalloc import _core

P = inspect.Parameter


class Marker:
    """An argument no converter accepts: a call that gets past the parser fails on it."""


def _callables(obj):
    for name in sorted(dir(obj)):
        if name.startswith("__"):
            continue
        f = getattr(obj, name)
        if callable(f) and not isinstance(f, type):
            yield name, f


# The C methods (pyalloc.Process adds Python ones for drawing and tracing).
PROCESS_METHODS = [name for name, _ in _callables(_core.Process)]
MODULE_FUNCTIONS = [name for name, _ in _callables(_core)]


@pytest.fixture
def proc():
    p = pyalloc.Process()
    yield p
    p.close()


def test_every_function_and_method_states_its_signature_and_has_a_docstring():
    missing = []
    for owner in (_core, pyalloc.Process, pyalloc.Heap, pyalloc.Handle, pyalloc.MEMORY_BASIC_INFORMATION):
        for name, f in _callables(owner):
            try:
                inspect.signature(f)
            except ValueError:
                missing.append(f"{getattr(owner, '__name__', owner)}.{name}")
            if not (f.__doc__ or "").strip():  # the signature is not the docstring
                missing.append(f"{getattr(owner, '__name__', owner)}.{name} (no docstring)")
    assert not missing
    assert str(inspect.signature(pyalloc.Process)) == (
        "(*, address_space=None, commit_limit=None, heap_guard=True, crt_debug=None)")


@pytest.mark.parametrize("name", [n for n in MODULE_FUNCTIONS if n in PROCESS_METHODS])
def test_module_function_has_the_process_methods_signature(name):
    method = inspect.signature(getattr(pyalloc.Process, name))
    params = list(method.parameters.values())[1:]  # without self
    assert inspect.signature(getattr(_core, name)) == method.replace(parameters=params)


def _call_error(f, *args, **kwargs):
    with pytest.raises(TypeError) as e:
        f(*args, **kwargs)
    return str(e.value)


@pytest.mark.parametrize("name", PROCESS_METHODS)
def test_stated_signature_is_what_the_parser_accepts(proc, name):
    f = getattr(proc, name)
    params = list(inspect.signature(f).parameters.values())
    positional = [p for p in params if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
    varargs = any(p.kind == P.VAR_POSITIONAL for p in params)

    for p in params:
        if p.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY):
            # Accepted by name: whatever fails, it is not the keyword.
            msg = _call_error(f, **{p.name: Marker()})
            assert "keyword" not in msg, msg
        elif p.kind == P.POSITIONAL_ONLY:
            _call_error(f, **{p.name: Marker()})

    if not varargs:
        n = len(positional)
        msg = _call_error(f, *[Marker()] * (n + 1))
        if not positional:
            assert "no arguments" in msg or "at most 0 arguments" in msg, msg
        elif "exactly one argument" not in msg:
            assert f"at most {n} " in msg or f"takes {n} positional" in msg, msg

    required = [p for p in positional if p.default is P.empty]
    if required:
        msg = _call_error(f)
        assert required[0].name in msg or "exactly one argument" in msg, msg

    keyword_only = [p for p in params if p.kind == P.KEYWORD_ONLY]
    if keyword_only and len(positional) == len(required):
        # One more positional than the positional parameters, for the first keyword-only one.
        msg = _call_error(f, *[Marker()] * (len(positional) + 1))
        assert "positional" in msg or "at most" in msg, msg


def test_process_accepts_exactly_its_stated_keywords():
    for p in inspect.signature(pyalloc.Process).parameters.values():
        assert p.kind == P.KEYWORD_ONLY
        pyalloc.Process(**{p.name: p.default}).close()
    with pytest.raises(TypeError, match="keyword"):
        pyalloc.Process(no_such_option=1)
    with pytest.raises(TypeError):
        pyalloc.Process(1 << 30)
