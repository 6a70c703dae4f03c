"""Errors of k2.platform: one small hierarchy rooted at `PlatformError`.

Every message names the service (or the record) and ends with the remedy, so a log line or a
dead-letter record is actionable on its own. The registry errors also carry Confluent's HTTP status
and error code, so the HTTP layer can answer exactly what Confluent clients expect.
"""

from __future__ import annotations

from typing import Any, ClassVar


class PlatformError(Exception):
    """Root of every error k2.platform raises; `str()` is '<service>: <what>. Remedy: <remedy>'."""

    service: ClassVar[str] = "platform"
    default_remedy: ClassVar[str] = "see the log of the named service"

    def __init__(self, detail: str, *, remedy: str | None = None, service: str | None = None) -> None:
        self.detail = detail
        self.remedy = remedy or self.default_remedy
        self.service_name = service or self.service
        super().__init__(_render(self.service_name, detail, self.remedy))

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors do not pickle by default; rebuild from the stored parts instead.
        return (_rebuild, (type(self), self.__dict__.copy()))


def _render(service: str, detail: str, remedy: str) -> str:
    return f"{service}: {valid_text(detail).rstrip('.')}. Remedy: {remedy}"


def valid_text(value: str) -> str:
    """`value` as valid Unicode: a lone surrogate (not encodable as UTF-8, so not printable, loggable or
    sendable) is kept as its escape, e.g. '\\ud800'. Messages and dead letters go through this."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _rebuild(cls: type[PlatformError], state: dict[str, Any]) -> PlatformError:
    error = cls.__new__(cls)
    Exception.__init__(error, _render(state["service_name"], state["detail"], state["remedy"]))
    error.__dict__.update(state)
    return error


class SchemaError(PlatformError):
    """A bundled Avro schema is missing or does not parse (a packaging bug, not bad data)."""

    service = "schemas"
    default_remedy = "reinstall k2 so the .avsc files ship with the package, or fix the named file"


class RoutingError(PlatformError):
    """A symbol matches no routing rule, so its asset class (and topic) cannot be decided."""

    service = "routing"
    default_remedy = "send the symbol in its canonical form (see k2.platform.routing) or extend the routing table"


class ValidationError(PlatformError):
    """A record failed validation; `reason_code` is stable and goes into the dead-letter record."""

    service = "validation"

    def __init__(
        self,
        field: str,
        reason: str,
        *,
        reason_code: str,
        record_id: str | None = None,
        remedy: str | None = None,
    ) -> None:
        self.field = field
        self.reason = reason
        self.reason_code = reason_code
        self.record_id = record_id
        super().__init__(
            f"record {record_id or '<no id>'}: field '{field}' {reason} [{reason_code}]",
            remedy=remedy or "fix the producing adapter, or dead-letter the record with this reason_code",
        )

    def to_dead_letter(self) -> dict[str, str | None]:
        """The fields a dead-letter record needs to explain why this record was refused."""
        return {
            "record_id": self.record_id,
            "field": self.field,
            "reason": self.reason,
            "reason_code": self.reason_code,
        }


class RegistryError(PlatformError):
    """A schema registry request failed; carries Confluent's HTTP status and error code."""

    service = "schema-registry"
    http_status: ClassVar[int] = 500
    error_code: ClassVar[int] = 50001

    def body(self) -> dict[str, Any]:
        """The Confluent-shaped JSON error body (message without our remedy suffix)."""
        return {"error_code": self.error_code, "message": self.detail}


class SubjectNotFound(RegistryError):
    http_status, error_code = 404, 40401
    default_remedy = "register a schema under the subject first, or check its spelling with GET /subjects"


class VersionNotFound(RegistryError):
    http_status, error_code = 404, 40402
    default_remedy = "list the subject's versions with GET /subjects/{subject}/versions"


class SchemaNotFound(RegistryError):
    http_status, error_code = 404, 40403
    default_remedy = "register the schema first; ids come from POST /subjects/{subject}/versions"


class SubjectSoftDeleted(RegistryError):
    http_status, error_code = 404, 40404
    default_remedy = "pass permanent=true to delete it for good, or register a schema to revive it"


class SubjectNotSoftDeleted(RegistryError):
    http_status, error_code = 404, 40405
    default_remedy = "soft-delete the subject first (DELETE without permanent=true)"


class VersionSoftDeleted(RegistryError):
    http_status, error_code = 404, 40406
    default_remedy = "pass permanent=true to delete the version for good"


class VersionNotSoftDeleted(RegistryError):
    http_status, error_code = 404, 40407
    default_remedy = "soft-delete the version first (DELETE without permanent=true)"


class SubjectConfigNotFound(RegistryError):
    http_status, error_code = 404, 40408
    default_remedy = "pass defaultToGlobal=true, or set one with PUT /config/{subject}"


class IncompatibleSchema(RegistryError):
    http_status, error_code = 409, 409
    default_remedy = (
        "give new fields defaults (or make them nullable with default null), or change the compatibility level"
    )


class InvalidSchema(RegistryError):
    http_status, error_code = 422, 42201
    default_remedy = "send a valid Avro schema (JSON) with schemaType AVRO and no references"


class InvalidVersion(RegistryError):
    http_status, error_code = 422, 42202
    default_remedy = "use a version between 1 and 2^31-1, or the string 'latest'"


class InvalidCompatibilityLevel(RegistryError):
    http_status, error_code = 422, 42203
    default_remedy = (
        "use one of NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE"
    )


class InvalidSubject(RegistryError):
    http_status, error_code = 422, 42208
    default_remedy = "use a non-empty subject name without control characters"


class BadRequest(RegistryError):
    http_status, error_code = 400, 400
    default_remedy = "send a JSON body as described by the Confluent Schema Registry REST API"


class Forbidden(RegistryError):
    """A caller other than the registry's owner (or root) tried to change it."""

    http_status, error_code = 403, 40301
    default_remedy = "change the registry as the user who started the stack (or root); reads are open to all"


class RequestProblem(RegistryError):
    """The request itself cannot be read: too large (413), too slow (408), an unsupported encoding (501)."""

    error_code = 400
    default_remedy = "send a complete request with a JSON body under 1 MiB"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = self.error_code = status  # type: ignore[misc]


class RouteNotFound(RegistryError):
    http_status, error_code = 404, 404
    default_remedy = "check the path against the Confluent Schema Registry REST API"


class RegistryStorageError(RegistryError):
    """The durable store cannot be read or written (disk full, corrupt log, data dir in use)."""

    http_status, error_code = 500, 50001
    default_remedy = "free disk space or fix the data dir permissions, then retry; restart the registry if it persists"


class RegistryProcessError(PlatformError):
    """The registry process could not be started, or died, or never said it was ready."""

    service = "schema-registry"
    default_remedy = "read the registry log named in the message; check the port and the --data-dir"


# ---- pipeline errors (producer, writer, query engine) ------------------------------------------------


class DependencyUnavailable(PlatformError):
    """A service the pipeline needs (Kafka, S3, the catalog database, the registry) is down or too slow.

    Transient by nature: the pipeline retries (writer) or the caller may retry (producer, queries).
    """

    default_remedy = "check the named service (`k2 stack status`); the pipeline resumes once it answers again"


class KafkaUnavailable(DependencyUnavailable):
    service = "kafka"


class StorageUnavailable(DependencyUnavailable):
    """The lakehouse object store (S3) failed or timed out."""

    service = "s3"


class CatalogUnavailable(DependencyUnavailable):
    """The Iceberg catalog database (PostgreSQL) failed or timed out."""

    service = "catalog"


class SchemaRegistryUnavailable(DependencyUnavailable):
    service = "schema-registry"


class ProducerError(PlatformError):
    """The market-data producer refused or could not send a record."""

    service = "kafka-producer"
    default_remedy = "see the producer log; check Kafka with `k2 stack status`"


class BackpressureError(ProducerError):
    """The producer's bounded buffer is full: Kafka is not acknowledging as fast as records arrive."""

    default_remedy = "slow down or retry later; raise max_buffered_messages or block_timeout if bursts are expected"


class ProducerClosed(ProducerError):
    default_remedy = "create a new MarketDataProducer; a closed one sends nothing"


class RecordRejected(ValidationError):
    """An invalid record was refused by the pipeline and sent to the dead-letter topic (if it could be)."""

    def __init__(self, error: ValidationError, *, dead_letter_topic: str | None) -> None:
        self.dead_letter_topic = dead_letter_topic
        where = f"sent to dead-letter topic {dead_letter_topic}" if dead_letter_topic else "NOT dead-lettered"
        super().__init__(
            error.field,
            f"{error.reason} ({where})",
            reason_code=error.reason_code,
            record_id=error.record_id,
            remedy=error.remedy,
        )


class WriterError(PlatformError):
    """The Iceberg writer cannot make progress (it keeps retrying; `health()` says why)."""

    service = "iceberg-writer"


class QueryError(PlatformError):
    service = "query"
    default_remedy = "check the query's arguments"


class QueryTimeout(QueryError):
    default_remedy = "narrow the time range, raise the timeout, or check S3 and the catalog with `k2 stack status`"
