"""`python -m k2.scenarios.produce_process SYMBOL COUNT TAG`: the platform's producer as a process of its
own (so its clock can be skewed), printing what the scenario's ledger needs as JSON lines on stdout: each
record's invocation before it is sent, then each outcome the producer reports. Settings come from the
`k2 stack env` variables (plus K2_TOPIC_PREFIX)."""

from __future__ import annotations

import json
import random
import sys
from dataclasses import asdict
from enum import Enum
from typing import Any

from k2.platform.config import PlatformConfig
from k2.platform.producer import DeliveryEvent, MarketDataProducer
from k2.scenarios.records import TradeFactory


def _emit(record: dict[str, Any]) -> None:
    print(json.dumps(record, default=lambda v: v.value if isinstance(v, Enum) else str(v)), flush=True)


def _outcome(event: DeliveryEvent) -> None:
    outcome = asdict(event)
    # its clock may be skewed: the ledger times outcomes by the scenario's own clock instead
    outcome.pop("enqueued_at"), outcome.pop("completed_at")
    _emit({"state": "outcome", "outcome": outcome})


def main(argv: list[str] | None = None) -> int:
    symbol, count, tag = (argv if argv is not None else sys.argv[1:])[:3]
    config = PlatformConfig.from_env()
    factory = TradeFactory(random.Random(tag), run_tag=tag)
    with MarketDataProducer(config, observer=_outcome, kafka_overrides={"client.id": "producer"}) as producer:
        for _ in range(int(count)):
            trade = factory(symbol)
            _emit({"state": "invoked", "key": trade["trade_id"], "symbol": symbol, "seq": trade["sequence_number"],
                   "event_timestamp": trade["event_timestamp"]})  # fmt: skip
            producer.produce_trade(trade)
        remaining = producer.flush(30)
    return 0 if remaining == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
