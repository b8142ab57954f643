"""`python -m lambda_fn.api > docs/openapi.json`: the generic OpenAPI document (no model loaded)."""

from lambda_fn.api.routes import openapi_json

print(openapi_json(), end="")
