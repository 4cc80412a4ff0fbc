"""The catalog's reference: `voxwatch metrics list/show`, and docs/metrics.md kept in sync."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from telemetry.catalog import default_catalog
from telemetry.catalog.reference import render_markdown
from voxwatch.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_docs_metrics_md_matches_the_catalog():
    doc = (ROOT / "docs" / "metrics.md").read_text()
    assert doc == render_markdown(default_catalog()), \
        "docs/metrics.md is stale: run `voxwatch metrics docs --output docs/metrics.md`"


def test_the_reference_lists_every_metric_once():
    doc = render_markdown(default_catalog())
    for spec in default_catalog():
        assert doc.count(f"| `{spec.name}` |") == 1, spec.name


def test_metrics_list_json_from_the_installed_command_lists_at_least_300_metrics():
    out = subprocess.run([sys.executable, "-m", "voxwatch.cli", "metrics", "list", "--json"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    metrics = json.loads(out)
    assert len(metrics) >= 300
    assert {"id", "name", "type", "unit", "labels", "layer", "component", "description"} <= set(metrics[0])
    assert len({m["name"] for m in metrics}) == len(metrics)


def test_metrics_list_filters_by_layer(capsys):
    assert main(["metrics", "list", "--layer", "business", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics and {m["layer"] for m in metrics} == {"business"}


def test_metrics_show_by_id_and_by_name_agree(capsys):
    assert main(["metrics", "show", "312", "--json"]) == 0
    by_id = json.loads(capsys.readouterr().out)
    assert main(["metrics", "show", "voxwatch_pool_saturation_ratio", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == by_id
    assert by_id["capacity"] == 1.0 and by_id["component"] == "pool"


def test_metrics_show_text_gives_a_query_to_start_from(capsys):
    assert main(["metrics", "show", "voxwatch_turn_latency_seconds"]) == 0
    text = capsys.readouterr().out
    assert "histogram_quantile(0.95" in text and "metric_samples" in text and "0.3" in text


def test_unknown_metric_or_layer_is_a_one_line_error(capsys):
    assert main(["metrics", "show", "voxwatch_pool_saturation"]) == 2
    err = capsys.readouterr().err
    assert "not declared" in err and "voxwatch_pool_saturation_ratio" in err
    assert main(["metrics", "list", "--layer", "cloud"]) == 2
    assert "unknown layer 'cloud'" in capsys.readouterr().err


def test_docs_check_reports_a_stale_file(tmp_path, capsys):
    stale = tmp_path / "metrics.md"
    stale.write_text("# old\n")
    assert main(["metrics", "docs", "--output", str(stale), "--check"]) == 1
    assert main(["metrics", "docs", "--output", str(stale)]) == 0
    assert main(["metrics", "docs", "--output", str(stale), "--check"]) == 0
