from __future__ import annotations

import math

import pytest

from lambda_fn.schema import SchemaError, Signature, validate

SIG = Signature.from_columns(
    [
        {"name": "zone", "type": "string"},
        {"name": "distance", "type": "double"},
        {"name": "hour", "type": "long"},
        {"name": "tip", "type": "double", "required": False},
    ]
)


def test_signature_from_mlmodel_text() -> None:
    mlmodel = {
        "signature": {
            "inputs": '[{"type": "string", "name": "PU_DO", "required": true}, {"type": "long", "name": "h"}]',
            "outputs": '[{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1]}}]',
        }
    }
    sig = Signature.from_mlmodel(mlmodel)
    assert sig is not None
    assert sig.names == ["PU_DO", "h"]
    assert sig.outputs[0]["type"] == "tensor"


def test_tensor_signature_means_no_column_validation() -> None:
    assert Signature.from_columns([{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 3]}}]) is None


def test_bad_declared_schema_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="unsupported type"):
        Signature.from_columns([{"name": "a", "type": "decimal"}])
    with pytest.raises(SchemaError, match="JSON"):
        Signature.from_columns("{not json")


def test_good_rows_become_a_typed_frame() -> None:
    rows = [{"zone": "a", "distance": 1, "hour": 3.0}, {"zone": "b", "distance": 2.5, "hour": 4, "tip": 1.0}]
    out = validate(rows, SIG)
    assert out.errors == {}
    assert out.kept == [0, 1]
    assert list(out.frame.columns) == ["zone", "distance", "hour", "tip"]
    assert str(out.frame["distance"].dtype) == "float64"
    assert str(out.frame["hour"].dtype) == "int64"
    assert math.isnan(out.frame["tip"].iloc[0])


def test_each_bad_row_is_rejected_with_the_field_named() -> None:
    rows = [
        {"zone": "a", "distance": 1.0, "hour": 1},
        {"distance": 1.0, "hour": 1},
        {"zone": "a", "distance": "far", "hour": 1},
        {"zone": "a", "distance": True, "hour": 1},
        {"zone": "a", "distance": 1.0, "hour": 1.5},
        [1, 2, 3],
        {"zone": 5, "distance": None, "hour": 1},
    ]
    out = validate(rows, SIG)
    assert out.kept == [0]
    assert "missing required field 'zone'" in out.errors[1]
    assert "'distance' must be a finite number, got string" in out.errors[2]
    assert "got boolean" in out.errors[3]
    assert "'hour' must be an integer" in out.errors[4]
    assert "must be a JSON object, got array" in out.errors[5]
    assert "'zone' must be a string" in out.errors[6] and "missing required field 'distance'" in out.errors[6]
    assert len(out.frame) == 1


def test_strict_mode_rejects_unknown_fields_only_when_asked() -> None:
    rows = [{"zone": "a", "distance": 1.0, "hour": 1, "colour": "red"}]
    assert validate(rows, SIG).errors == {}
    strict = validate(rows, SIG, strict=True)
    assert "unknown field(s) 'colour'" in strict.errors[0]


def test_without_signature_objects_pass_through() -> None:
    out = validate([{"a": 1}, "x", {"a": 2}], None)
    assert out.kept == [0, 2]
    assert out.frame["a"].tolist() == [1, 2]
    assert "got string" in out.errors[1]
