"""The command line on TorchScript files: a model with two outputs (--output), and --method all
with the methods that cannot apply listed in the figure."""

from __future__ import annotations

import warnings

import torch
from PIL import Image
from torch import nn

from convscope.cli.main import main
from convscope.viz.compare import DPI, PANEL
from tests.models import TinyCNN


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = TinyCNN()
        self.aux = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(x)
        return self.aux(logits), logits


def save_scripted(model: nn.Module, path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.10+ deprecates TorchScript
        torch.jit.script(model.eval()).save(str(path))
    return str(path)


def test_output_picks_the_logits_of_a_two_headed_model(tmp_path, capsys):
    path = save_scripted(TwoHeads(), tmp_path / "heads.pt")
    out = tmp_path / "out"
    args = ["explain", "sample:coffee", "--model", path, "--method", "saliency", "-o", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "the model returns tuple of 2: [0] (1, 3) tensor, [1] (1, 5) tensor" in err
    assert "--output in the CLI" in err and len(err.splitlines()) == 1 and not out.exists()
    assert main([*args, "--output", "1", "--top", "5"]) == 0
    text = capsys.readouterr().out
    assert text.count("  5. class ") == 1  # five of the logits' five classes, not the aux head's 3
    assert (out / "coffee_saliency.png").exists()


def test_all_methods_on_torchscript_lists_the_skipped_in_the_figure(tmp_path, capsys):
    path = save_scripted(TinyCNN(), tmp_path / "tiny.pt")
    out = tmp_path / "out"
    cheap = ["-O", "n_samples=2", "-O", "steps=2", "-O", "window=112", "-O", "stride=112"]
    assert (
        main(
            ["explain", "sample:coffee", "--model", path, "--method", "all", *cheap, "-o", str(out)]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "coffee: 4 methods for" in captured.out
    assert captured.err.count("skipped ") == 12
    with Image.open(out / "coffee_all.png") as im:
        w, h = im.size
    # one row: the photo and the 4 hookless methods; the skipped methods' note below it
    assert w == round(PANEL[0] * 5 * DPI) and round(PANEL[1] * DPI) < h < 2 * PANEL[1] * DPI
