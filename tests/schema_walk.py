"""What the API takes, read from its operations: the input models and the types their fields may hold."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel

from lms.api.endpoint import operation_of


def leaves(annotation: Any, constraints: tuple[Any, ...] = ()) -> typing.Iterator[tuple[Any, tuple[Any, ...]]]:
    """Each concrete type a field may take, with the constraints of the Annotated wrappers around it."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        inner, *extra = typing.get_args(annotation)
        picked = [getattr(e, "metadata", [e]) for e in extra]
        yield from leaves(inner, constraints + tuple(x for group in picked for x in group))
    elif origin in (typing.Union, types.UnionType, list, tuple):
        for arg in typing.get_args(annotation):
            yield from leaves(arg, constraints)
    else:
        yield annotation, constraints


def input_models(app: Any) -> set[type[BaseModel]]:
    found: set[type[BaseModel]] = set()

    def add(model: type[BaseModel]) -> None:
        if model not in found:
            found.add(model)
            for info in model.model_fields.values():
                for leaf, _ in leaves(info.annotation):
                    if isinstance(leaf, type) and issubclass(leaf, BaseModel):
                        add(leaf)

    for route in app.router.routes():
        op = operation_of(route.handler)
        for model in (op.body, op.query) if op is not None else ():
            if model is not None:
                add(model)
    return found
