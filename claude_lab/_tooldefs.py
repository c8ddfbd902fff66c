"""Tool definitions from pydantic models and functions; ``tool_choice`` shorthands.

``tools=`` takes Messages API tool dicts as they are, a pydantic model class
(name = class name, description = docstring, input_schema = its JSON schema), or
a plain function (name = function name, description = docstring, input_schema
from the signature's annotations and defaults). ``tool_choice=`` takes the API's
dict, ``"auto" | "any" | "none"``, or a tool's name (that tool is forced). A
single forced tool gets one result column per input field (:func:`forced_schema`).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pydantic

from claude_lab._errors import InputError

__all__ = ["choice_param", "definitions", "forced_schema"]

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _schema_of_model(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    schema.pop("description", None)
    return schema


def _schema_of_function(fn: Callable[..., Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = Any if param.annotation is inspect.Parameter.empty else param.annotation
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[name] = (annotation, default)
    model = pydantic.create_model(f"{fn.__name__}_input", **fields)
    return _schema_of_model(model)


def _description(obj: Any) -> str | None:
    doc = inspect.getdoc(obj)
    return doc.strip() if doc else None


def _one(tool: Any, k: int) -> dict[str, Any]:
    if isinstance(tool, Mapping):
        return dict(tool)
    if isinstance(tool, type) and issubclass(tool, pydantic.BaseModel):
        name, schema = tool.__name__, _schema_of_model(tool)
        doc = tool.__doc__ if tool.__doc__ != pydantic.BaseModel.__doc__ else None
        description = inspect.cleandoc(doc) if doc else None
    elif inspect.isfunction(tool) or inspect.ismethod(tool):
        name, description = tool.__name__, _description(tool)
        try:
            schema = _schema_of_function(tool)
        except (TypeError, pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError) as e:
            raise InputError(
                f"tools[{k}]: cannot build an input schema from {tool.__name__}'s signature "
                f"({e}). Annotate its parameters with JSON-able types, or pass a dict."
            ) from None
    else:
        raise InputError(
            f"tools[{k}] must be a tool dict, a pydantic model class or a function; "
            f"got {type(tool).__name__}."
        )
    if not _NAME.match(name):
        raise InputError(
            f"tools[{k}]: the name {name!r} is not a valid tool name (letters, digits, _ and -, "
            "at most 64); pass a dict with a 'name'."
        )
    out: dict[str, Any] = {"name": name, "input_schema": schema}
    if description:
        out["description"] = description
    return out


def definitions(tools: Any) -> list[dict[str, Any]] | None:
    """The tools= argument as Messages API tool dicts (None stays None)."""
    if tools is None:
        return None
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
        tools = [tools]
    defs = [_one(t, k) for k, t in enumerate(tools)]
    names = [d.get("name") for d in defs]
    dup = sorted({n for n in names if isinstance(n, str) and names.count(n) > 1})
    if dup:
        raise InputError(f"tools= has more than one tool named {dup}; tool names must be unique.")
    return defs


def choice_param(choice: Any, tools: Sequence[Mapping[str, Any]] | None) -> dict[str, Any] | None:
    """tool_choice= as the API's dict; a tool's name forces that tool."""
    if choice is None:
        return None
    names = [str(t.get("name")) for t in tools or ()]
    if isinstance(choice, str):
        if choice in ("auto", "any", "none"):
            choice = {"type": choice}
        elif choice in names:
            choice = {"type": "tool", "name": choice}
        else:
            raise InputError(
                f"tool_choice={choice!r} is neither 'auto', 'any', 'none' nor the name of a "
                f"tool in tools= ({', '.join(names) or 'none given'})."
            )
    if not isinstance(choice, Mapping):
        raise InputError(f"tool_choice= must be a dict or a string, got {choice!r}.")
    choice = dict(choice)
    if choice.get("type") in ("any", "tool") and not names:
        raise InputError("tool_choice= forces a tool, but tools= is empty; pass tools=[...].")
    if choice.get("type") == "tool" and choice.get("name") not in names:
        raise InputError(
            f"tool_choice names the tool {choice.get('name')!r}, which is not in tools= "
            f"({', '.join(names)})."
        )
    return choice


def forced_schema(
    tools: Sequence[Mapping[str, Any]] | None, choice: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """The input schema of the one tool every reply must call, if there is exactly one:
    ``tool_choice`` names it, or says ``any`` with a single tool."""
    if not tools or not choice:
        return None
    kind = choice.get("type")
    if kind == "tool":
        tool = next((t for t in tools if t.get("name") == choice.get("name")), None)
    elif kind == "any" and len(tools) == 1:
        tool = tools[0]
    else:
        return None
    schema = tool.get("input_schema") if tool is not None else None
    if not isinstance(schema, Mapping) or not isinstance(schema.get("properties"), Mapping):
        return None
    return {"name": str(tool.get("name")), "schema": dict(schema)}  # type: ignore[union-attr]
