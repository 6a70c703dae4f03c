"""`k2 chaos run --dry-run`: every shipped scenario by its whole name (parametrize ids included, which the old
table cut to `test_…` and rich ate as markup), its faults and its expected outcome; nothing is touched."""

from __future__ import annotations

import subprocess
import sys


def test_dry_run_lists_whole_names_and_expectations() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "k2", "chaos", "run", "--dry-run", "--suite", "all"],
        capture_output=True, text=True, timeout=300, check=True, env={"COLUMNS": "80", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    lines = done.stdout.splitlines()
    assert "k2 chaos run --dry-run (all): 42 scenarios" in lines[0]
    faults_of = {lines[i - 1]: line for i, line in enumerate(lines) if line.startswith("    faults:")}
    assert (
        "chaos_clock_skew" in faults_of["TestTimeJumps::test_ntp_step_forward_and_back_on_the_writer_and_the_catalog"]
    )
    assert (
        "chaos_api_failure"
        in faults_of["TestGatewayFailure::test_paused_gateway_times_out_clients_then_answers_correctly"]
    )
    for case in ("invalid_decimal_precision", "missing_required_field", "wrong_asset_class"):
        name = f"TestDataCorruption::test_malformed_trade_is_rejected_to_dead_letters[{case}]"
        assert name in lines
    expects = {
        lines[i - 1]: line
        for i, line in enumerate(lines)
        if line.startswith("    faults:") and "FAILED GRACEFULLY" in line
    }
    assert set(expects) == {
        "TestKafkaBrokerFailure::test_full_buffer_during_outage_raises_backpressure",
        "TestQueryEngineResilience::test_query_fails_typed_when_storage_unavailable",
        "TestSchemaEvolution::test_incompatible_change_is_refused_and_the_producer_fails_typed",
    }
    assert (
        "chaos_minio_failure" in expects["TestQueryEngineResilience::test_query_fails_typed_when_storage_unavailable"]
    )
