"""Schema-evolution chaos: the registry, producers on different schema versions, and the Iceberg writer.

A schema change is a fault of its own: a compatible one must flow through to the table without a record lost,
an incompatible one must be refused before anything is sent, and a registry that loses or reuses what it
registered must never make the writer corrupt or silently skip a record. The Iceberg writer runs throughout;
the checker reads Kafka and Iceberg independently of it.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from k2.chaos.faults import service_failure
from k2.platform.errors import ProducerError, SchemaRegistryUnavailable
from k2.platform.redrive import redrive
from k2.platform.schemas import load_schema, load_schema_str
from k2.scenarios.sinks import read_dead_letters

pytestmark = [pytest.mark.chaos, pytest.mark.chaos_schema]

FLAGS = ("ADD", "REMOVE", None)


def produce(producer: Any, factory: Any, n: int, symbol: str = "BTC-USD", **fields: Any) -> list[str]:
    """n trades of one symbol: one producer per symbol, so per-symbol order is each producer's own."""
    return [producer.produce_trade(factory(symbol, **fields)) for _ in range(n)]


def trade_schema_with(*fields: dict[str, Any], version: int = 2) -> str:
    """A bundled trade schema plus fields, as JSON text (a schema some other team might register)."""
    schema = load_schema("trade", version)
    schema["fields"] += fields
    return json.dumps(schema)


def registry(config: Any) -> SchemaRegistryClient:
    return SchemaRegistryClient(config.registry_conf())


class TestSchemaEvolution:
    def test_compatible_evolution_v2_to_v3_during_production(
        self, producer_v2: Any, make_producer: Any, trade_factory: Any, chaos_rng: Any, iceberg_writer: Any,
        query_engine: Any, verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """Trade v3 (v2 + optional liquidity_flag) registered while a v2 producer keeps producing: both versions
        flow at once into one table (BTC-USD on v2, ETH-USD on v3), the writer adds the column to it, old rows
        read it as null, no row is lost, and queries keep working across the change."""
        old = produce(producer_v2, trade_factory, 100)
        producer_v3 = make_producer(schemas={"trade": 3})
        flags: dict[str, Any] = {}
        for _ in range(100):
            old += produce(producer_v2, trade_factory, 1)
            flag = chaos_rng.choice(FLAGS)
            flags[producer_v3.produce_trade(trade_factory("ETH-USD", liquidity_flag=flag))] = flag
        assert producer_v2.flush(30) == 0 and producer_v3.flush(30) == 0
        verify_no_loss(iceberg=True)
        old_rows = query_engine.trades("BTC-USD").to_pylist()
        assert len(old_rows) == len(old) and all(r["liquidity_flag"] is None for r in old_rows)
        assert {r["trade_id"]: r["liquidity_flag"] for r in query_engine.trades("ETH-USD").to_pylist()} == flags
        assert query_engine.vwap("BTC-USD") is not None and query_engine.vwap("ETH-USD") is not None

    @pytest.mark.chaos_expect("failed_gracefully")
    def test_incompatible_change_is_refused_and_the_producer_fails_typed(
        self, producer_v2: Any, make_producer: Any, trade_factory: Any, platform_config: Any, verify_no_loss: Any
    ) -> None:
        """A producer with an incompatible trade schema (a new required field) during production: the registry
        refuses it (409) and the producer fails with a typed error naming the remedy, which ends the scenario:
        expected outcome FAILED GRACEFULLY. Nothing is sent under the refused schema, the subject's versions are
        unchanged, and the v2 producer's trades are all there."""
        produce(producer_v2, trade_factory, 50)
        assert producer_v2.flush(30) == 0
        subject = f"{platform_config.topics.trades}-value"
        versions = registry(platform_config).get_versions(subject)
        incompatible = trade_schema_with({"name": "venue_order_id", "type": "string"})
        try:
            make_producer(schemas={"trade": incompatible})
        finally:
            assert registry(platform_config).get_versions(subject) == versions
            verify_no_loss()  # a record sent under the refused schema would show as unexpected

    def test_two_producers_register_conflicting_schemas_at_once(
        self, make_producer: Any, trade_factory: Any, platform_config: Any, iceberg_writer: Any, verify_no_loss: Any
    ) -> None:
        """Two producers register different v3 schemas for one subject at the same moment (liquidity_flag as a
        string, and as a long): the registry serialises them, exactly one wins and the other fails typed (409);
        the winner's trades reach Iceberg with the new column of its type."""
        as_long = trade_schema_with({"name": "liquidity_flag", "type": ["null", "long"], "default": None})
        candidates = {"string": load_schema_str("trade", 3), "long": as_long}
        outcome: dict[str, Any] = {}
        start = threading.Barrier(len(candidates))

        def register(name: str, schema: str) -> None:
            start.wait(10)
            try:
                outcome[name] = make_producer(schemas={"trade": schema})
            except ProducerError as exc:
                outcome[name] = exc

        threads = [threading.Thread(target=register, args=item) for item in candidates.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        losers = {n: o for n, o in outcome.items() if isinstance(o, ProducerError)}
        assert len(outcome) == 2 and len(losers) == 1, outcome
        assert "409" in str(next(iter(losers.values())))
        winner_name = next(n for n in outcome if n not in losers)
        value = "ADD" if winner_name == "string" else 1
        produce(outcome[winner_name], trade_factory, 100, liquidity_flag=value)
        assert outcome[winner_name].flush(30) == 0
        verify_no_loss(iceberg=True)

    def test_compatibility_none_lets_an_incompatible_schema_in(
        self, producer_v2: Any, trade_factory: Any, platform_config: Any, iceberg_writer: Any, verify_no_loss: Any
    ) -> None:
        """The subject's compatibility is set to NONE mid-run and a rogue producer registers a schema the
        tables cannot take (a new required field) and sends 30 trades. The writer dead-letters each with its
        schema id and keeps writing the valid trades: nothing corrupted, nothing silently skipped."""
        from k2.platform.producer import MarketDataProducer

        produce(producer_v2, trade_factory, 50)
        subject = f"{platform_config.topics.trades}-value"
        registry(platform_config).set_compatibility(subject, "NONE")
        rogue_schema = trade_schema_with({"name": "venue_order_id", "type": "string"})
        with MarketDataProducer(platform_config, schemas={"trade": rogue_schema}) as rogue:  # outside the ledger
            rogue_ids = set(produce(rogue, trade_factory, 30, venue_order_id="X-1"))
            assert rogue.flush(30) == 0
        rogue_id = registry(platform_config).get_latest_version(subject).schema_id
        produce(producer_v2, trade_factory, 50)
        assert producer_v2.flush(30) == 0
        letters = read_dead_letters(platform_config, len(rogue_ids))
        assert len(letters) == len(rogue_ids)
        assert {(letter["reason_code"], letter["schema_id"], letter["stage"]) for letter in letters} == {
            ("schema_evolution", rogue_id, "writer")
        }
        assert len({letter["source_offset"] for letter in letters}) == len(rogue_ids)
        verify_no_loss(iceberg=True, ignore=rogue_ids)

    def test_registry_killed_mid_registration(
        self, producer_v2: Any, make_producer: Any, trade_factory: Any, chaos_schema_registry_failure: Any,
        chaos_ledger: Any, iceberg_writer: Any, verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """The registry is SIGKILLed while a v3 producer registers its schema: the registration fails typed
        (SchemaRegistryUnavailable, the records it refused are reported failed, never sent), and once the
        registry is back (its log replayed) the producer registers and sends them; the writer takes both
        versions. Nothing acknowledged is lost."""
        produce(producer_v2, trade_factory, 50)
        with chaos_schema_registry_failure(duration_seconds=None, mode="kill"):
            producer_v3 = make_producer(schemas={"trade": 3})
            refused = []
            for _ in range(5):
                trade = trade_factory("ETH-USD", liquidity_flag="ADD")
                with pytest.raises(SchemaRegistryUnavailable):
                    producer_v3.produce_trade(trade)
                refused.append(trade)
        assert chaos_ledger.counts().get("failed", 0) == len(refused)
        for trade in refused:  # what the typed error says: resend once the registry is back
            producer_v3.produce_trade(trade)
        assert producer_v2.flush(30) == 0 and producer_v3.flush(30) == 0
        verify_no_loss(iceberg=True)

    def test_registry_storage_rolled_back_unknown_ids_dead_lettered_then_redriven(
        self, producer_v2: Any, make_producer: Any, trade_factory: Any, platform_config: Any, k2_stack: Any,
        chaos_session: Any, iceberg_writer: Any, verify_no_loss: Any,
    ) -> None:  # fmt: skip
        """The registry's storage is rolled back to before trade v3 was registered, while a v3 producer keeps
        the id it was given: its trades reach the writer with a schema id the registry does not know. Each is
        dead-lettered with that id; once v3 is registered again (and gets its id back) a redrive of the dead
        letters puts them through, and every acknowledged trade is in Iceberg exactly once."""
        produce(producer_v2, trade_factory, 50)
        log = Path(k2_stack.data_dir) / "schema-registry" / "data" / "registry.jsonl"
        before_v3 = log.read_bytes()
        # ids are global and content-addressed: a schema no earlier scenario registered, so the rollback forgets it
        unique = {"name": f"desk_{trade_factory.run_tag}", "type": ["null", "string"], "default": None}
        new_schema = trade_schema_with(unique, version=3)
        producer_v3 = make_producer(schemas={"trade": new_schema})
        subject = f"{platform_config.topics.trades}-value"
        v3_id = registry(platform_config).get_latest_version(subject).schema_id
        with service_failure("schema-registry", duration_seconds=None, mode="stop", session=chaos_session) as fault:
            log.write_bytes(before_v3)  # the registry's storage as it was before the v3 registration
        stranded = set(produce(producer_v3, trade_factory, 40, "ETH-USD", liquidity_flag="REMOVE"))
        assert producer_v2.flush(30) == 0 and producer_v3.flush(30) == 0
        letters = read_dead_letters(platform_config, len(stranded))
        assert {(letter["reason_code"], letter["schema_id"]) for letter in letters} == {("unknown_schema_id", v3_id)}
        assert len({letter["source_offset"] for letter in letters}) == len(stranded)  # each once
        make_producer(schemas={"trade": new_schema})  # v3 registered again
        again = registry(platform_config).get_latest_version(subject).schema_id
        assert again == v3_id, f"v3 came back as schema id {again}, not {v3_id}: its dead letters cannot be redriven"
        result = redrive(platform_config)
        fault.record.notes["redrive"] = result.to_dict()
        assert len(result.redriven) == len(stranded) and result.waiting is None, result.to_dict()
        verify_no_loss(iceberg=True)
