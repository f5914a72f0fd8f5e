"""Training: a resumed run ends bit for bit where the uninterrupted run ends; the strategies see
the batches they promise; bad runs are refused with one line and nothing overwritten."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn

from convscope.data.shapes import TASKS, generate
from convscope.errors import ConvscopeError
from convscope.models.shapes import MultiTaskNet
from convscope.train.checkpoint import CheckpointError, load_checkpoint
from convscope.train.trainer import RECIPES, _make_model, _multitask_step, train_model

TINY = {"batch_size": 4, "eval_every": 2, "eval_size": 8, "progress": False}


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_resume_ends_where_the_uninterrupted_run_ends(tmp_path):
    whole = train_model("shapes-cnn", steps=4, out=tmp_path / "a", **TINY)
    train_model("shapes-cnn", steps=2, out=tmp_path / "b", **TINY)
    resumed = train_model("shapes-cnn", steps=4, out=tmp_path / "b", resume=True, **TINY)
    a, b = _weights(whole.model), _weights(resumed.model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert whole.log["train"] == resumed.log["train"] and len(whole.log["train"]) == 4
    assert [e["step"] for e in resumed.log["eval"]] == [2, 4]
    tensors, meta = load_checkpoint(tmp_path / "b" / "checkpoint.safetensors")
    assert meta["step"] == 4 and meta["model"] == "shapes-cnn"
    assert int(tensors["optim.0.step"]) == 4  # Adam's state travels with the weights
    # training changed the weights; the filter statistic is logged before and after
    fresh = _make_model("shapes-cnn", None, 0)
    assert not torch.equal(fresh.conv1.weight, whole.model.conv1.weight)
    assert {"filters_init", "filters_trained"} <= whole.log.keys()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "checkpoint.safetensors",
        "shapes-cnn.json",
        "shapes-cnn.safetensors",
    ]


def test_a_step_is_the_cross_entropy_of_its_batch_plus_the_l2_penalty():
    run = train_model("softmax-regression", steps=1, batch_size=8, eval_size=8, progress=False)
    model = _make_model("softmax-regression", None, 0)
    batch = generate(8, 0, **RECIPES["softmax-regression"].data)
    ce = nn.functional.cross_entropy(model(batch.images), batch.labels["shape"])
    assert run.log["train"][0]["loss"] == pytest.approx(float(ce.detach()), rel=1e-6)
    # Adam's first step moves every weight that has a gradient by lr (sign of the gradient)
    w = model.fc.weight.detach().clone().requires_grad_(True)
    logits = batch.images.flatten(1) @ w.T + model.fc.bias.detach()
    loss = nn.functional.cross_entropy(logits, batch.labels["shape"])
    (loss + RECIPES["softmax-regression"].l2 * w.pow(2).sum()).backward()  # biases: no penalty
    step = run.model.fc.weight.detach() - model.fc.weight.detach()
    lr = RECIPES["softmax-regression"].lr
    assert torch.allclose(step, -lr * torch.sign(w.grad), atol=lr * 1e-3)


def test_multitask_strategies_see_the_same_batches():
    recipe = RECIPES["multitask"]
    tasks = list(TASKS)
    options = {"batch_size": 2, "seed": 3, "strategy": "accumulate"}
    model = _make_model("multitask", "accumulate", 3)
    loss, record = _multitask_step(model, recipe, options, step=1)
    assert list(record["losses"]) == tasks  # one batch per task, summed
    expected = 0.0
    for i, task in enumerate(tasks):  # update 1 takes batches 5..9, task i labels batch 5 + i
        data = generate(2, 3, start=(5 + i) * 2, **recipe.data)
        ce = nn.functional.cross_entropy(model(data.images, task), data.labels[task])
        expected += float(ce.detach())
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    picked = []
    for u in range(40):
        _, rec = _multitask_step(model, recipe, {**options, "strategy": "random"}, step=u)
        picked += list(rec["losses"])
    assert set(picked) == set(tasks)  # one random task per update; all of them over 40 updates
    task = picked[7]
    data = generate(2, 3, start=7 * 2, **recipe.data)  # update 7 takes batch 7
    _, rec = _multitask_step(model, recipe, {**options, "strategy": "random"}, step=7)
    ce = nn.functional.cross_entropy(model(data.images, task), data.labels[task])
    assert rec["losses"][task] == pytest.approx(float(ce.detach()), rel=1e-5)
    # the budget counts batches: 10 batches are 2 accumulate updates and 10 random ones
    tiny = {"steps": 10, "batch_size": 2, "eval_every": 5, "eval_size": 4, "progress": False}
    acc = train_model("multitask", strategy="accumulate", **tiny)
    rnd = train_model("multitask", strategy="random", **tiny)
    assert len(acc.log["train"]) == 2 and len(rnd.log["train"]) == 10
    assert [e["batches"] for e in acc.log["eval"]] == [e["batches"] for e in rnd.log["eval"]]
    assert [e["batches"] for e in acc.log["eval"]] == [5, 10]


def test_open_gates_give_the_ungated_network():
    tasks = {t: len(v) for t, v in TASKS.items()}
    torch.manual_seed(0)
    gated = MultiTaskNet(tasks, gated=True)
    plain = MultiTaskNet(tasks, gated=False)
    plain.load_state_dict({k: v for k, v in gated.state_dict().items() if k != "gates"})
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        gated.gates.fill_(50.0)  # sigmoid(50) == 1 in float32
        assert torch.equal(gated(x, "colour"), plain(x, "colour"))
        gated.gates[list(TASKS).index("colour"), 1].fill_(-50.0)  # colour's last layer closed
        assert torch.allclose(gated(x, "colour"), gated.heads["colour"].bias.expand(3, -1))
    run = train_model("multitask", strategy="gated", steps=3, **{**TINY, "eval_every": 3})
    gates = run.log["eval"][-1]["gates"]
    assert len(gates) == len(TASKS) and len(gates[0]) == 2 and len(gates[0][0]) == 32


def test_bad_runs_are_refused_and_nothing_is_overwritten(tmp_path):
    with pytest.raises(ConvscopeError, match="unknown model 'shapes-cn'.*did you mean: shapes-cnn"):
        train_model("shapes-cn")
    with pytest.raises(ConvscopeError, match="multitask needs a strategy"):
        train_model("multitask")
    with pytest.raises(ConvscopeError, match="multitask needs a strategy"):
        train_model("multitask", strategy="sometimes")
    with pytest.raises(ConvscopeError, match="applies to multitask only"):
        train_model("mlp", strategy="random")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        train_model("mlp", out=tmp_path / "none", resume=True, **TINY)
    train_model("shapes-cnn", steps=2, out=tmp_path / "c", **TINY)
    before = (tmp_path / "c" / "checkpoint.safetensors").read_bytes()
    with pytest.raises(CheckpointError, match="exists: pass --resume"):
        train_model("shapes-cnn", steps=2, out=tmp_path / "c", **TINY)
    with pytest.raises(CheckpointError, match=r"different options: seed 0 != 1"):
        train_model("shapes-cnn", steps=4, seed=1, out=tmp_path / "c", resume=True, **TINY)
    with pytest.raises(CheckpointError, match="already at step 2"):
        train_model("shapes-cnn", steps=2, out=tmp_path / "c", resume=True, **TINY)
    shutil.copytree(tmp_path / "c", tmp_path / "d")
    with pytest.raises(CheckpointError, match="checkpoint of 'shapes-cnn', not 'mlp'"):
        train_model("mlp", steps=4, out=tmp_path / "d", resume=True, **TINY)
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "checkpoint.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a convscope training checkpoint"):
        train_model("mlp", steps=4, out=tmp_path / "e", resume=True, **TINY)
    assert (tmp_path / "c" / "checkpoint.safetensors").read_bytes() == before


def test_cli_train_prints_accuracy_and_refuses_bad_arguments(tmp_path, capsys):
    from convscope.cli.main import main

    out = tmp_path / "run"
    args = ["train", "softmax-regression", "--steps", "2", "--batch-size", "4", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "softmax-regression: held-out accuracy after 2 steps:" in text
    assert (out / "softmax-regression.safetensors").exists()
    assert main(args) == 2  # the checkpoint exists
    assert "pass --resume" in capsys.readouterr().err
    assert main(["train", "multitask", "--strategy", "often", "--out", str(tmp_path / "x")]) == 2
    assert "accumulate, random, gated" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
