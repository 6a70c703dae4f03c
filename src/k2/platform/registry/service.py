"""The registry's operations, with Confluent Schema Registry semantics, independent of HTTP.

Each method returns the JSON-ready body Confluent returns and raises a RegistryError subclass
carrying Confluent's status and error code. Reads and writes hold the store lock, so concurrent
registrations are serialised: the compatibility check and the append see the same state.

Semantics kept from Confluent: schema ids are global and content-addressed (the same schema gets the
same id under every subject, and again after being deleted); versions are per subject and never
reused while any version, even soft-deleted, remains; soft-deleted versions stay readable by id and
with deleted=true; permanent delete requires a soft delete first. Permanently deleting a subject
also drops its subject-level compatibility.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from k2.platform.errors import (
    IncompatibleSchema,
    InvalidSchema,
    InvalidSubject,
    InvalidVersion,
    SchemaNotFound,
    SubjectConfigNotFound,
    SubjectNotFound,
    SubjectNotSoftDeleted,
    SubjectSoftDeleted,
    VersionNotFound,
    VersionNotSoftDeleted,
    VersionSoftDeleted,
)
from k2.platform.registry.compat import CompatibilityLevel, check_compatibility
from k2.platform.registry.schema import AvroSchema, parse_avro
from k2.platform.registry.store import Store, VersionRecord

__all__ = ["SchemaRegistry"]

log = logging.getLogger(__name__)
_GUID_NAMESPACE = uuid.UUID("6f1d7c8e-4b7a-4d0e-9a57-2f0c1b6e9d42")
_MAX_VERSION = 2**31 - 1
_DIGITS = re.compile(r"[0-9]{1,10}")  # ASCII only: str.isdigit() accepts "²", which int() refuses


def _check_subject(subject: str) -> str:
    if not subject or any(ord(c) < 32 for c in subject):
        raise InvalidSubject(f"The specified subject '{subject}' is not valid.")
    return subject


def _schema_from_body(body: Any, normalize: bool) -> AvroSchema:
    if not isinstance(body, dict):
        raise InvalidSchema("Invalid schema: the request body must be a JSON object with a 'schema' string")
    schema_type = body.get("schemaType") or "AVRO"
    if schema_type != "AVRO":
        raise InvalidSchema(f"Invalid schema type {schema_type}: this registry supports AVRO only")
    if body.get("references"):
        raise InvalidSchema(
            "Invalid schema: schema references are not supported by this registry",
            remedy="inline the referenced named types into the schema",
        )
    return parse_avro(body.get("schema"), normalize=normalize)


class SchemaRegistry:
    """Confluent-compatible registry operations over a durable `Store`."""

    def __init__(self, store: Store, default_level: CompatibilityLevel = CompatibilityLevel.BACKWARD) -> None:
        self.store = store
        self.default_level = default_level

    # -- helpers -----------------------------------------------------------------------------
    @property
    def _state(self) -> Any:
        return self.store.state

    def _versions(self, subject: str, *, deleted: bool = False) -> list[VersionRecord]:
        versions = self._state.subjects.get(subject, {})
        return sorted((v for v in versions.values() if deleted or not v.deleted), key=lambda v: v.version)

    def _existing(self, subject: str, *, deleted: bool) -> list[VersionRecord]:
        versions = self._versions(_check_subject(subject), deleted=deleted)
        if not versions:
            raise SubjectNotFound(f"Subject '{subject}' not found.")
        return versions

    @staticmethod
    def _parse_version(version: str | int) -> int | None:
        """None for 'latest' (or -1); InvalidVersion (42202) for anything else not in [1, 2^31-1]."""
        text = str(version).strip()
        if text.lower() == "latest" or text == "-1":
            return None
        if _DIGITS.fullmatch(text) and 1 <= int(text) <= _MAX_VERSION:
            return int(text)
        raise InvalidVersion(
            f"The specified version '{version}' is not a valid version id. "
            'Allowed values are between [1, 2^31-1] and the string "latest"'
        )

    def _pick(self, versions: list[VersionRecord], version: str | int) -> VersionRecord:
        number = self._parse_version(version)
        if number is None:
            return versions[-1]
        for record in versions:
            if record.version == number:
                return record
        raise VersionNotFound(f"Version {number} not found.")

    def _describe(self, record: VersionRecord) -> dict[str, Any]:
        schema = self._state.schemas[record.schema_id]
        return {
            "subject": record.subject,
            "version": record.version,
            "id": record.schema_id,
            "guid": schema.guid,
            "schema": schema.schema.text,
        }

    def level_for(self, subject: str | None) -> CompatibilityLevel:
        if subject is not None and subject in self._state.configs:
            return self._state.configs[subject]
        return self._state.global_level or self.default_level

    def _referencing(self, schema_id: int, deleted: bool = True) -> list[VersionRecord]:
        return [
            v
            for versions in self._state.subjects.values()
            for v in versions.values()
            if v.schema_id == schema_id and (deleted or not v.deleted)
        ]

    # -- schemas -----------------------------------------------------------------------------
    def register(self, subject: str, body: Any, *, normalize: bool = False) -> dict[str, Any]:
        schema = _schema_from_body(body, normalize)
        _check_subject(subject)
        with self.store.lock:
            live = self._versions(subject)
            for record in reversed(live):
                if self._state.schemas[record.schema_id].schema.canonical == schema.canonical:
                    return {"id": record.schema_id, "guid": self._state.schemas[record.schema_id].guid}
            level = self.level_for(subject)
            previous = [(v.version, self._state.schemas[v.schema_id].schema) for v in live]
            messages = check_compatibility(schema, previous, level)
            if messages:
                raise IncompatibleSchema(
                    f'Schema being registered is incompatible with an earlier schema for subject "{subject}", '
                    f"details: [{', '.join(messages)}]"
                )
            ops: list[dict[str, Any]] = []
            schema_id = self._state.by_canonical.get(schema.canonical)
            if schema_id is None:
                schema_id = self._state.next_id
                guid = str(uuid.uuid5(_GUID_NAMESPACE, schema.canonical))
                ops.append({"op": "schema", "id": schema_id, "schema": schema.text, "guid": guid})
            everything = self._versions(subject, deleted=True)
            version = everything[-1].version + 1 if everything else 1
            ops.append({"op": "version", "subject": subject, "version": version, "id": schema_id})
            self.store.commit(ops)
            log.info("registered subject=%s version=%d id=%d level=%s", subject, version, schema_id, level.value)
            return {"id": schema_id, "guid": self._state.schemas[schema_id].guid}

    def lookup(self, subject: str, body: Any, *, normalize: bool = False, deleted: bool = False) -> dict[str, Any]:
        schema = _schema_from_body(body, normalize)
        with self.store.lock:
            versions = self._existing(subject, deleted=deleted)
            for record in reversed(versions):
                if self._state.schemas[record.schema_id].schema.canonical == schema.canonical:
                    return self._describe(record)
            raise SchemaNotFound("Schema not found", remedy=f"register it under subject '{subject}' first")

    def schema_by_id(self, schema_id: str | int) -> dict[str, Any]:
        with self.store.lock:
            record = self._schema_record(schema_id)
            return {"schema": record.schema.text, "guid": record.guid}

    def _schema_record(self, schema_id: str | int) -> Any:
        text = str(schema_id)
        number = int(text) if _DIGITS.fullmatch(text) else -1
        record = self._state.schemas.get(number)
        if record is None or not self._referencing(number):
            raise SchemaNotFound(f"Schema {schema_id} not found")
        return record

    def schema_by_guid(self, guid: str) -> dict[str, Any]:
        with self.store.lock:
            schema_id = self._state.by_guid.get(guid)
            if schema_id is None or not self._referencing(schema_id):
                raise SchemaNotFound(f"Schema {guid} not found")
            return {"schema": self._state.schemas[schema_id].schema.text, "id": schema_id, "guid": guid}

    def raw_schema_by_id(self, schema_id: str | int) -> str:
        with self.store.lock:
            return self._schema_record(schema_id).schema.text

    def subjects_for_id(self, schema_id: str | int, *, deleted: bool = False) -> list[str]:
        with self.store.lock:
            record = self._schema_record(schema_id)
            return sorted({v.subject for v in self._referencing(record.id, deleted)})

    def versions_for_id(self, schema_id: str | int, *, deleted: bool = False) -> list[dict[str, Any]]:
        with self.store.lock:
            record = self._schema_record(schema_id)
            found = sorted(self._referencing(record.id, deleted), key=lambda v: (v.subject, v.version))
            return [{"subject": v.subject, "version": v.version} for v in found]

    # -- subjects and versions ---------------------------------------------------------------
    def subjects(self, *, prefix: str = "", deleted: bool = False, deleted_only: bool = False) -> list[str]:
        with self.store.lock:
            found = []
            for subject, versions in self._state.subjects.items():
                if not subject.startswith(prefix):
                    continue
                all_deleted = all(v.deleted for v in versions.values())
                if (deleted_only and all_deleted) or (not deleted_only and (deleted or not all_deleted)):
                    found.append(subject)
            return sorted(found)

    def versions(self, subject: str, *, deleted: bool = False, deleted_only: bool = False) -> list[int]:
        with self.store.lock:
            versions = self._existing(subject, deleted=deleted or deleted_only)
            return [v.version for v in versions if v.deleted or not deleted_only]

    def version(self, subject: str, version: str | int, *, deleted: bool = False) -> dict[str, Any]:
        self._parse_version(version)
        with self.store.lock:
            return self._describe(self._pick(self._existing(subject, deleted=deleted), version))

    def delete_version(self, subject: str, version: str | int, *, permanent: bool = False) -> int:
        number = self._parse_version(version)
        with self.store.lock:
            everything = self._existing(subject, deleted=True)
            if permanent:
                record = self._pick(everything, version)
                if not record.deleted:
                    raise VersionNotSoftDeleted(
                        f"Subject '{subject}' Version {record.version} was not deleted first before being "
                        "permanently deleted"
                    )
                self.store.commit([{"op": "hard_delete", "subject": subject, "version": record.version}])
            else:
                record = self._pick(everything, number) if number is not None else None
                if record is not None and record.deleted:
                    raise VersionSoftDeleted(
                        f"Subject '{subject}' Version {record.version} was soft deleted. "
                        "Set permanent=true to delete permanently"
                    )
                record = record or self._pick(self._existing(subject, deleted=False), "latest")
                self.store.commit([{"op": "soft_delete", "subject": subject, "version": record.version}])
            log.info("deleted subject=%s version=%d permanent=%s", subject, record.version, permanent)
            return record.version

    def delete_subject(self, subject: str, *, permanent: bool = False) -> list[int]:
        with self.store.lock:
            everything = self._existing(subject, deleted=True)
            live = [v for v in everything if not v.deleted]
            if permanent:
                if live:
                    raise SubjectNotSoftDeleted(
                        f"Subject '{subject}' was not deleted first before being permanently deleted"
                    )
                ops = [{"op": "hard_delete", "subject": subject, "version": v.version} for v in everything]
                if subject in self._state.configs:
                    ops.append({"op": "config", "subject": subject, "level": None})
                deleted = everything
            else:
                if not live:
                    raise SubjectSoftDeleted(
                        f"Subject '{subject}' was soft deleted. Set permanent=true to delete permanently"
                    )
                ops = [{"op": "soft_delete", "subject": subject, "version": v.version} for v in live]
                deleted = live
            self.store.commit(ops)
            log.info("deleted subject=%s versions=%s permanent=%s", subject, [v.version for v in deleted], permanent)
            return [v.version for v in deleted]

    # -- compatibility and config ------------------------------------------------------------
    def test_compatibility(
        self,
        subject: str,
        version: str | int | None,
        body: Any,
        *,
        normalize: bool = False,
        verbose: bool = False,
    ) -> dict[str, Any]:
        """Against one version (the level's direction only), or against what `level` requires if None."""
        schema = _schema_from_body(body, normalize)
        number = self._parse_version(version) if version is not None else None
        with self.store.lock:
            live = self._versions(_check_subject(subject))
            level = self.level_for(subject)
            if version is None:
                previous = [(v.version, self._state.schemas[v.schema_id].schema) for v in live]
            elif not live and number is None:
                previous = []
            else:
                record = self._pick(self._existing(subject, deleted=False), version)
                previous = [(record.version, self._state.schemas[record.schema_id].schema)]
                level = CompatibilityLevel(level.value.removesuffix("_TRANSITIVE"))
            messages = check_compatibility(schema, previous, level)
        result: dict[str, Any] = {"is_compatible": not messages}
        if verbose:
            result["messages"] = messages
        return result

    def get_config(self, subject: str | None = None, *, default_to_global: bool = False) -> dict[str, str]:
        with self.store.lock:
            if subject is None:
                return {"compatibilityLevel": self.level_for(None).value}
            if subject in self._state.configs:
                return {"compatibilityLevel": self._state.configs[subject].value}
            if default_to_global:
                return {"compatibilityLevel": self.level_for(None).value}
            raise SubjectConfigNotFound(f"Subject '{subject}' does not have subject-level compatibility configured")

    def set_config(self, subject: str | None, body: Any) -> dict[str, str]:
        raw = body.get("compatibility", body.get("compatibilityLevel")) if isinstance(body, dict) else None
        level = CompatibilityLevel.parse(raw)
        if subject is not None:
            _check_subject(subject)
        with self.store.lock:
            self.store.commit([{"op": "config", "subject": subject, "level": level.value}])
        log.info("compatibility subject=%s level=%s", subject or "<global>", level.value)
        return {"compatibility": level.value}

    def delete_config(self, subject: str | None = None) -> dict[str, str]:
        with self.store.lock:
            previous = self.get_config(subject)
            if subject is not None or self._state.global_level is not None:
                self.store.commit([{"op": "config", "subject": subject, "level": None}])
            return previous
