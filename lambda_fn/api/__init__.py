"""The synchronous prediction API: routes over the same model store, validation and scoring as the stream.

One job per module, each importing only those above it in this list:

- `schemas`: the wire format, pydantic models of every body: request bodies are validated by them, answers
  checked against them, and the OpenAPI document is built from them;
- `errors`: the one error body and the translation of exceptions into responses;
- `request`: payload format, request id and size, media type, body text and strict JSON;
- `inputs`: a body validated by its request model (or a CSV) → rows (MLflow JSON/CSV, Open Inference
  Protocol, /predict payloads), checking only what needs the model signature;
- `openapi`: the document, from a resolver's paths and each route's models;
- `serving`: settings, model, hook and scoring a request, as API answers;
- `routes`: the route table (`ROUTES`) and the route functions;
- `app`: the resolvers and `handle(event, context)`.

`handle`, `ROUTES` and `openapi_json` are imported from here lazily, so importing one module of the
package (say `inputs`) does not build the resolvers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lambda_fn.api.app import handle
    from lambda_fn.api.routes import ROUTES, openapi_json

__all__ = ["ROUTES", "handle", "openapi_json"]
_HOMES = {"handle": "lambda_fn.api.app", "ROUTES": "lambda_fn.api.routes", "openapi_json": "lambda_fn.api.routes"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
