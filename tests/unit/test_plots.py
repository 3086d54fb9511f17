"""The DVC plots as pictures: dvc.yaml's definitions, the spec DVC would draw, the card's
links to them (rendering itself is covered by the integration tests)."""

from __future__ import annotations

from types import SimpleNamespace

from mlpipeline.serve.card import (
    DESCRIPTION_LIMIT,
    card_html,
    linked_to_run,
    plots_section,
    registry_description,
)
from mlpipeline.track.plots import plot_definitions, present, vega_lite_spec, vega_lite_version
from mlpipeline.track.registry import Decision, model_id_of, run_datasets

DVC_YAML = """
stages: {}
plots:
  - reports/plots/importance.csv:
      title: Feature importance (gain)
      template: bar_horizontal
      x: gain
      y: feature
  - reports/plots/roc.csv:
      x: fpr
      y: tpr
  - reports/plots/bare.csv
"""


def test_definitions_come_from_dvc_yaml_and_those_with_data_are_present(tmp_path):
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    found = plot_definitions(tmp_path / "dvc.yaml")
    assert [(d.name, d.title) for d in found] == [
        ("importance", "Feature importance (gain)"),
        ("roc", "roc"),
        ("bare", "bare"),
    ]
    (tmp_path / "importance.csv").write_text("feature,gain\nb,2.5\na,10\n")
    assert [d.name for d in present(found, tmp_path)] == ["importance"]  # a regression run's


def test_the_spec_is_dvc_s_template_filled_with_the_data(tmp_path):
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "importance.csv").write_text("feature,gain\nb,2.5\na,10\n")
    definition = plot_definitions(tmp_path / "dvc.yaml")[0]
    spec = vega_lite_spec(definition, tmp_path / "importance.csv")
    assert spec["title"]["text"] == "Feature importance (gain)"
    values = spec["data"]["values"]
    assert [(v["feature"], v["gain"], v["rev"]) for v in values] == [
        ("b", "2.5", "workspace"),
        ("a", "10", "workspace"),
    ]
    assert "vega-lite/v5" in spec["$schema"] and vega_lite_version(spec).startswith("5.")


def test_the_card_links_its_plots_beside_it_and_the_registry_copy_serves_them_from_the_run():
    section = plots_section(["predictions", "search"])
    assert "![predictions](plots/predictions.png)\n![search](plots/search.png)" in section
    assert plots_section([]) == ""
    linked = linked_to_run(section, "abc123")
    assert "](get-artifact?run_uuid=abc123&path=plots/search.png)" in linked
    page = card_html("# Model card: m\n\n| a | b |\n|---|---|\n| 1 | 2 |\n" + section)
    assert "<title>Model card: m</title>" in page and "<table>" in page
    assert '<img src="plots/predictions.png" alt="predictions"' in page
    assert "<script" not in page


def test_a_registered_version_resolves_to_its_logged_model():
    assert model_id_of(SimpleNamespace(model_id="m-1", source="models:/m-2")) == "m-1"
    assert model_id_of(SimpleNamespace(model_id=None, source="models:/m-2")) == "m-2"
    assert model_id_of(SimpleNamespace(model_id=None, source="runs:/r/model")) == ""


def test_lineage_lists_a_run_s_datasets():
    dataset = SimpleNamespace(
        name="test",
        digest="d41d8cd98f00b204e9800998ecf8427e",
        source='{"uri": "data/features/test.parquet"}',
        profile='{"num_rows": 10, "num_elements": 30, "targets": "price"}',
    )
    tag = SimpleNamespace(key="mlflow.data.context", value="testing")
    run = SimpleNamespace(
        inputs=SimpleNamespace(dataset_inputs=[SimpleNamespace(dataset=dataset, tags=[tag])])
    )
    client = SimpleNamespace(get_run=lambda run_id: run)
    assert run_datasets(client, "r1") == [
        {
            "name": "test",
            "context": "testing",
            "digest": "d41d8cd98f00b204e9800998ecf8427e",
            "source": "data/features/test.parquet",
            "rows": 10,
            "target": "price",
        }
    ]
    assert run_datasets(client, "") == []


def test_dvc_s_own_plots_show_uses_the_committed_offline_template():
    """``.dvc/config`` names ``.dvc/plots/offline.html`` (plots.html_template), which is what
    ``offline_template`` makes from the pinned vl-convert: regenerate it when that changes."""
    import configparser

    from mlpipeline.track.plots import offline_template
    from tests.helpers import REPO

    config = configparser.ConfigParser()
    config.read(REPO / ".dvc" / "config")
    template = REPO / ".dvc" / config["plots"]["html_template"]
    assert template.read_text(encoding="utf-8") == offline_template(), (
        "regenerate: python -c 'from mlpipeline.track.plots import offline_template; "
        'open(".dvc/plots/offline.html", "w").write(offline_template())\''
    )


def test_a_big_table_s_picture_draws_every_k_th_row_and_says_so(tmp_path):
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    rows = "".join(f"f{i},{i}\n" for i in range(45))
    (tmp_path / "importance.csv").write_text("feature,gain\n" + rows)
    definition = plot_definitions(tmp_path / "dvc.yaml")[0]
    spec = vega_lite_spec(definition, tmp_path / "importance.csv", max_points=10)
    assert [v["feature"] for v in spec["data"]["values"]] == [f"f{i}" for i in range(0, 45, 5)]
    assert spec["title"]["text"] == "Feature importance (gain) (every 5 of 45 rows)"
    whole = vega_lite_spec(definition, tmp_path / "importance.csv", max_points=45)
    assert len(whole["data"]["values"]) == 45


def test_the_card_s_segment_table_marks_small_segments_and_names_the_worst():
    from mlpipeline.serve.card import segments_section, worst_section

    slices = {
        "metric": "rmse",
        "min_rows": 30,
        "overall": {"rows": 1000, "rmse": 10.0},
        "worst": {"segment": "shop = airport", "rows": 300, "rmse": 25.0, "ratio": 2.5},
        "segments": {
            "shop": {
                "airport": {"rows": 300, "rmse": 25.0, "ratio": 2.5, "small": False},
                "kiosk": {"rows": 12, "rmse": 2.0, "ratio": 0.2, "small": True},
            },
            "size": {
                "q1": {
                    "rows": 200,
                    "rmse": 8.0,
                    "ratio": 0.8,
                    "low": 0.0,
                    "high": 2.5,
                    "small": False,
                }
            },
        },
    }
    section = segments_section(slices)
    assert "## Performance by segment" in section
    assert "| `shop` airport | 300 | 25 | +15 | 2.50 |" in section
    assert "| `shop` kiosk | 12 (small) | 2 | -8 | 0.20 |" in section
    assert "| `size` q1 (0 to 2.5) | 200 | 8 | -2 | 0.80 |" in section
    assert (
        "Worst segment of at least 30 rows: shop = airport (2.50× the whole test part)" in section
    )
    worst = [{"row": 7, "actual": 100.0, "predicted": 160.0, "error": 60.0,
              "features": {"shop": "airport", "size": 1.25},
              "top_contributions": [{"feature": "shop", "contribution": 0.4}]}]  # fmt: skip
    table = worst_section(worst, {"task": "regression", "target_transform": "log1p"})
    assert "| 7 | 100 | 160 | +60 | shop=airport, size=1.25 | shop +0.4 |" in table
    assert "log1p-transformed target's scale" in table
    assert segments_section(None) == "" and worst_section([], {}) == ""


def test_a_long_card_loses_its_longest_sections_first_and_keeps_its_plots_for_the_registry():
    decision = Decision(True, "beats the champion", "rmse", 1.0)
    tags = {"git.commit": "abc", "train.run_id": "r1", "validation.report": "runs:/p/v.json"}
    registry = registry_description("", "p", "3", decision, tags)
    short = "# Card\n\n## Metrics\n| a | b |\n"
    assert registry_description(short, "p", "3", decision, tags) == short + registry
    rows = "".join(f"| segment {i} | {i} |\n" for i in range(400))
    long = f"# Card\n\n## Metrics\n| r2 | 0.9 |\n\n## Segments\n{rows}\n## Worst\n{rows}"
    long += "\n## Plots\n![p](plots/p.png)\n"
    kept = registry_description(long, "p", "3", decision, tags)
    assert len(kept) <= DESCRIPTION_LIMIT < len(long) and kept.endswith(registry)
    assert "| r2 | 0.9 |" in kept and "## Segments" in kept and "## Worst" in kept
    assert "get-artifact?run_uuid=p&path=plots/p.png" in kept  # the plots stay
    assert "Shortened to fit the registry" in kept and "run p's artifacts" in kept
    one_block = "# Card\n" + rows * 3
    cut = registry_description(one_block, "p", "3", decision, tags)
    assert len(cut) <= DESCRIPTION_LIMIT and cut.endswith(registry)
    body = cut.split("\n*Shortened")[0]
    assert one_block.startswith(body) and body.endswith("|\n")  # whole lines only
