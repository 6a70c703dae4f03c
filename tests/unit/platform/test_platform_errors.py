"""The error hierarchy: messages name the service and the remedy; registry errors carry Confluent codes."""

from __future__ import annotations

import pickle

import pytest

from k2.platform import errors as e


def test_message_names_service_and_remedy() -> None:
    err = e.SubjectNotFound("Subject 'x' not found.")
    assert str(err) == f"schema-registry: Subject 'x' not found. Remedy: {err.remedy}"
    assert "GET /subjects" in err.remedy
    assert err.body() == {"error_code": 40401, "message": "Subject 'x' not found."}
    assert err.http_status == 404


@pytest.mark.parametrize(
    ("cls", "status", "code"),
    [
        (e.SubjectNotFound, 404, 40401),
        (e.VersionNotFound, 404, 40402),
        (e.SchemaNotFound, 404, 40403),
        (e.SubjectSoftDeleted, 404, 40404),
        (e.SubjectNotSoftDeleted, 404, 40405),
        (e.VersionSoftDeleted, 404, 40406),
        (e.VersionNotSoftDeleted, 404, 40407),
        (e.SubjectConfigNotFound, 404, 40408),
        (e.IncompatibleSchema, 409, 409),
        (e.InvalidSchema, 422, 42201),
        (e.InvalidVersion, 422, 42202),
        (e.InvalidCompatibilityLevel, 422, 42203),
        (e.InvalidSubject, 422, 42208),
        (e.RegistryStorageError, 500, 50001),
    ],
)
def test_confluent_codes(cls: type[e.RegistryError], status: int, code: int) -> None:
    err = cls("detail")
    assert isinstance(err, e.PlatformError)
    assert (err.http_status, err.error_code) == (status, code)
    assert "schema-registry: detail" in str(err) and "Remedy: " in str(err)


def test_validation_error_carries_field_reason_and_record() -> None:
    err = e.ValidationError("price", "is NaN", reason_code="not_finite", record_id="t-9")
    assert (err.field, err.reason, err.reason_code, err.record_id) == ("price", "is NaN", "not_finite", "t-9")
    assert str(err).startswith("validation: record t-9: field 'price' is NaN [not_finite]. Remedy: ")


def test_errors_pickle() -> None:
    for err in (
        e.ValidationError("price", "is NaN", reason_code="not_finite", record_id="t-9"),
        e.IncompatibleSchema("nope", remedy="do this"),
    ):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err) and back.__dict__ == err.__dict__
