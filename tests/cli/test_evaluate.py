"""``convscope evaluate``: the table, its legend, metrics.csv / metrics.json, and one-line errors
that write nothing."""

from __future__ import annotations

import csv
import json

import pytest

from convscope.cli.main import main


def run(*args: str) -> int:
    return main(list(args))


def test_evaluate_prints_a_table_and_writes_csv_and_json(tmp_path, capsys):
    out = tmp_path / "out"
    code = run(
        "evaluate",
        "sample:coffee",
        "sample:chelsea",
        "--methods",
        "gradcam,saliency",
        "--steps",
        "8",
        "--out",
        str(out),
    )
    assert code == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("method"))
    for column in ("deletion AUC", "insertion AUC", "avg drop %", "incr. conf. %", "time s"):
        assert column in lines[head]
    assert set(lines[head + 1]) == {"-"}
    table = lines[head + 2 : head + 4]
    assert [row.split()[0] for row in table] == ["gradcam", "saliency"]
    assert len({len(line) for line in lines[head : head + 4]}) == 1  # aligned
    assert "deletion AUC: lower is better" in text and "insertion AUC: higher is better" in text
    assert "avg drop %: lower is better" in text and "incr. conf. %: higher is better" in text
    assert "coffee, chelsea" in text and "8 steps" in text

    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "metrics.json"]
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    meta = json.loads((out / "metrics.json").read_text())
    assert [r["method"] for r in rows] == ["gradcam", "saliency"]
    assert meta["steps"] == 8 and meta["labels"] == ["coffee", "chelsea"]
    for r, j, line in zip(rows, meta["rows"], table):
        assert r["method"] == j["method"] and j["n_images"] == 2
        for key in ("deletion_auc", "insertion_auc", "average_drop", "increase_in_confidence"):
            assert float(r[key]) == pytest.approx(j[key])
        assert 0 <= j["deletion_auc"] <= 1 and 0 <= j["insertion_auc"] <= 1
        assert 0 <= j["average_drop"] <= 100 and j["increase_in_confidence"] in (0, 50, 100)
        assert line.split()[1] == f"{j['deletion_auc']:.4f}"
    assert rows[0]["layer"] == "_swish@1"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--methods", "gradcam,gradcan"], "did you mean: gradcam"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--batch-size", "0"], "--batch-size must be a positive integer"),
        (["--methods", " , "], "--methods is empty"),
    ],
)
def test_errors_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "never"
    assert run("evaluate", "sample:coffee", *args, "--out", str(out)) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("convscope: error:") and message in err
    assert len(err.splitlines()) == 1
    assert not out.exists() and "wrote" not in captured.out


def test_methods_all_skips_methods_that_do_not_apply(tmp_path, capsys, monkeypatch):
    import convscope.core.registry as registry
    import convscope.runner as runner
    from convscope.errors import LayerError

    monkeypatch.setattr(registry, "methods", lambda: ["gradcam", "saliency"])
    real = runner.explain

    def explain(bundle, x, method, *args, **kw):
        if method == "gradcam":
            raise LayerError("the model has no layer with a 4-D (N, C, H, W) output; name a layer")
        return real(bundle, x, method, *args, **kw)

    monkeypatch.setattr(runner, "explain", explain)
    args = ["--methods", "all", "--steps", "4", "--out", str(tmp_path)]
    assert run("evaluate", "sample:coffee", *args) == 0
    text = capsys.readouterr().out
    assert "note: skipped gradcam: the model has no layer" in text
    assert "saliency" in text
    meta = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["method"] for r in meta["rows"]] == ["saliency"]
    assert meta["skipped"][0]["method"] == "gradcam"
