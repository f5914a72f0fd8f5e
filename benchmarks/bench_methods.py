"""Time every convscope method against its physical limit and against captum, torchcam and
pytorch-grad-cam, on the bundled EfficientNet-Lite0.

For each method, in one process, on one model object and one input batch:

* ``limit``: the passes the method needs (``convscope.method_info(name).passes``), written by hand on
  the plain model in the cheapest honest way: parameters frozen (``requires_grad=False``, as convscope
  runs its methods), ``torch.no_grad`` where no gradient is needed, the layer output made a leaf for
  gradients that stop at a layer, perturbed copies of all images batched ``--rows`` at a time, plus
  the method's arithmetic (a few elementwise operations on the layer or input grid).
* ``convscope``: ``convscope.explain(bundle, x, method=..., target=[...], layer=..., batch_size=...,
  **options)``, the public front door.
* peers that offer the method (whatever of captum, torchcam and pytorch-grad-cam imports), called the
  way their documentation shows, on the same model, batch, targets, layer and rows per pass.

Before timing, every map is compared with the method's reference map (the limit's map, or a
hand-written reference where the limit only does the passes); a convscope or limit map that
disagrees stops the script, a peer that computes something else is reported with its error.
Timing: warm-up runs, then ``--reps`` (single-pass methods) or ``--reps-multi`` (multi-pass
methods) rounds in which every entry of one method runs once, round-robin, the starting entry
rotated each round. Tables give the median ms per call and ratios of medians from the same rounds.

    python benchmarks/bench_methods.py --markdown [--only gradcam,scorecam] [--reps 15]
        [--reps-multi 5] [--batch 8] [--multi-batch 2] [--rows 4] [--grad-rows 4] [--threads 2]
        [--profile]

pytorch-grad-cam needs torchvision, which does not import next to this project's CPU torch 2.13;
run the script from the separate environment described in benchmarks/README.md to include it.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam draws progress bars in its loops

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import convscope  # noqa: E402

TARGETS = [1, 207, 281, 340, 409, 530, 817, 954, 76, 145, 323, 430, 609, 701, 850, 999]
HEAD = "_swish@1"  # convscope's default CAM layer: the head's ReLU6, 1280 x 7 x 7
SCORE_LAYER = "_blocks.0._swish"  # Score-CAM and Ablation-CAM: a ReLU6, 32 x 112 x 112
SINGLE = [
    "saliency",
    "guided_backprop",
    "deconvnet",
    "guided_gradcam",
    "cam",
    "gradcam",
    "gradcam++",
    "xgradcam",
    "layercam",
    "hirescam",
    "eigencam",
]
MULTI = ["smoothgrad", "integrated_gradients", "occlusion", "scorecam", "ablationcam"]


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------
@dataclass
class Config:
    """The multi-pass settings (smaller than the defaults so the whole run stays ~10 minutes)."""

    # perturbed rows per pass: 4, convscope's CPU default for 224 px inputs (larger passes are
    # slower on a CPU, for every library: see convscope.core.perturbed_batches), given to every entry
    rows: int = 4  # forward-only methods
    grad_rows: int = 4  # forward + backward
    sg_samples: int = 16
    sg_noise: float = 0.15
    ig_steps: int = 16
    occ_window: int = 48
    occ_stride: int = 24

    def describe(self, method: str) -> str:
        return {
            "smoothgrad": f"n_samples={self.sg_samples}, noise={self.sg_noise}, "
            f"{self.grad_rows} rows/pass",
            "integrated_gradients": f"steps={self.ig_steps}, gausslegendre, baseline 0, "
            f"{self.grad_rows} rows/pass",
            "occlusion": f"window {self.occ_window}, stride {self.occ_stride}, baseline 0, "
            f"{self.rows} rows/pass",
            "scorecam": f"layer {SCORE_LAYER} (32 ch), {self.rows} rows/pass",
            "ablationcam": f"layer {SCORE_LAYER} (32 ch), {self.rows} rows/pass",
        }.get(
            method,
            "" if method in ("saliency", "guided_backprop", "deconvnet") else f"layer {HEAD}",
        )


@dataclass
class Entry:
    name: str  # row label
    kind: str  # "limit" | "convscope" | "captum" | "torchcam" | "pytorch-grad-cam"
    fn: Callable[[], Any]
    compare: Callable[[Any], torch.Tensor] | None = None  # output -> map in the reference's form
    expect: str = ""  # "" must match the reference; else why a peer computes something else
    note: str = ""
    normalized: bool = False  # output is min-max normalized at input size (pytorch-grad-cam)


@dataclass
class Group:
    method: str
    images: int
    entries: list[Entry]
    reference: Callable[[], torch.Tensor] | None = None  # None: the limit's map
    tol: float = 1e-4
    notes: list[str] = field(default_factory=list)
    multi: bool = False


# --------------------------------------------------------------------------------------------
# hand-written building blocks of the limits (plain model, nothing from convscope)
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


@contextlib.contextmanager
def capture(module: nn.Module, call: int = 0, leaf: bool = False) -> Iterator[dict]:
    """Keep the output of call ``call`` of ``module`` (made a leaf that requires grad if asked)."""
    state: dict[str, Any] = {"k": 0, "out": None}

    def hook(_m, _i, o):
        k = state["k"]
        state["k"] = k + 1
        if k == call:
            if leaf:
                o = o.detach().requires_grad_(True)
            state["out"] = o
            return o
        return None

    h = module.register_forward_hook(hook)
    try:
        yield state
    finally:
        h.remove()


def module_at(model: nn.Module, dotted: str) -> nn.Module:
    return dict(model.named_modules())[dotted]


def relu6_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.ReLU6)]


class _Deconv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clamp(0, 6)

    @staticmethod
    def backward(ctx, g):
        return g.clamp_min(0)


@contextlib.contextmanager
def rectifier_rule(model: nn.Module, rule: str, active: list[bool]) -> Iterator[None]:
    """Reference rules on every ReLU6 call: ``guided`` clamps the gradient arriving at the output
    to >= 0 (ReLU6's own backward then masks it by 0 < x < 6); ``deconvnet`` recomputes the output
    through a function whose backward is only the clamp. Applied while ``active[0]`` is True."""

    def guided(_m, _i, o):
        if o.requires_grad:
            o.register_hook(lambda g: g.clamp_min(0) if active[0] else g)

    def deconv(_m, i, _o):
        return _Deconv.apply(i[0])

    hs = [
        m.register_forward_hook(guided if rule == "guided" else deconv)
        for m in relu6_modules(model)
    ]
    try:
        yield
    finally:
        for h in hs:
            h.remove()


def normalize_like_pgc(raw: torch.Tensor, size: int, relu: bool = True) -> torch.Tensor:
    """pytorch-grad-cam's output: ReLU, per-image min-max at the layer's grid, bilinear to the
    input size (cv2.resize), min-max again."""
    m = raw.clamp_min(0) if relu else raw
    m = m - m.amin(dim=(1, 2), keepdim=True)
    m = m / (1e-7 + m.amax(dim=(1, 2), keepdim=True))
    if m.shape[-1] != size:
        m = F.interpolate(m[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    m = m - m.amin(dim=(1, 2), keepdim=True)  # and again after resizing (its layer aggregation)
    return m / (1e-7 + m.amax(dim=(1, 2), keepdim=True))


def gauss_legendre(steps: int) -> tuple[list[float], list[float]]:
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return list(0.5 * (nodes + 1)), list(0.5 * weights)


def window_starts(length: int, window: int, stride: int) -> list[int]:
    count = -(-(length - window) // stride) + 1
    return [k * stride for k in range(count)]


# --------------------------------------------------------------------------------------------
# the groups
# --------------------------------------------------------------------------------------------
def peers_available() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, mod in (
        ("captum", "captum"),
        ("torchcam", "torchcam"),
        ("pytorch-grad-cam", "pytorch_grad_cam"),
    ):
        try:
            found[name] = __import__(mod)
        except Exception as e:  # torchvision missing, ABI mismatch, ...
            found[name] = e
    return found


class _SplitReLU6(nn.Module):
    """``model._swish`` runs twice (stem @0, head @1). pytorch-grad-cam keeps the first call of a
    hooked module, so its copy of the model gets one ReLU6 module per call site."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.head = nn.ReLU6(), nn.ReLU6()

    def forward(self, x):
        return self.head(x) if x.shape[1] == 1280 else self.stem(x)


def build_groups(bundle, cfg: Config, x8: torch.Tensor, x2: torch.Tensor, peers: dict) -> dict:
    model = bundle.model
    fc = model._fc
    have = {k: not isinstance(v, Exception) for k, v in peers.items()}
    groups: dict[str, Group] = {}
    cleanups: list[Callable[[], None]] = []

    def targets_of(x):
        return TARGETS[: x.shape[0]]

    def idx_of(x):
        return torch.tensor(targets_of(x), device=x.device)

    idx8, idx2 = idx_of(x8), idx_of(x2)
    n8, n2 = x8.shape[0], x2.shape[0]

    def cs(method, x, **kw):
        t = targets_of(x)
        return lambda: convscope.explain(bundle, x, method=method, target=t, **kw).raw_maps

    # ---- single pass, gradient to the input ---------------------------------------------------
    def input_grad(x, idx):
        with frozen(model):
            xr = x.detach().requires_grad_(True)
            out = model(xr)
            (g,) = torch.autograd.grad(out.gather(1, idx[:, None]).sum(), xr)
        return g

    def saliency_limit(x=x8, idx=idx8):
        return input_grad(x, idx).abs().amax(dim=1)

    def rule_reference(rule, x=x8, idx=idx8):
        def ref():
            with rectifier_rule(model, rule, [True]):
                return input_grad(x, idx).abs().amax(dim=1)

        return ref

    # ---- layer helpers ------------------------------------------------------------------------
    def layer_grad(x, idx):
        """Frozen weights, ``_swish@1`` made a leaf: forward + backward to the layer only."""
        with frozen(model), capture(model._swish, 1, leaf=True) as st:
            out = model(x)
            a = st["out"]
            (g,) = torch.autograd.grad(out.gather(1, idx[:, None]).sum(), a)
        return a.detach(), g

    def layer_act(x, module, call=0):
        with torch.no_grad(), capture(module, call) as st:
            out = model(x)
        return out, st["out"]

    def cam_limit(x=x8, idx=idx8):
        _, a = layer_act(x, model._swish, 1)
        return torch.einsum("nk,nkhw->nhw", fc.weight[idx], a)

    def wsum(w, a):
        return (w[:, :, None, None] * a).sum(dim=1).clamp_min(0)

    def gradcam_limit(x=x8, idx=idx8):
        a, g = layer_grad(x, idx)
        return wsum(g.mean(dim=(2, 3)), a)

    def gradcampp_limit(x=x8, idx=idx8):
        a, g = layer_grad(x, idx)
        g2 = g * g
        denom = 2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g2 * g
        alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, 1.0), 0.0)
        return wsum((alpha * g.clamp_min(0)).sum(dim=(2, 3)), a)

    def xgradcam_limit(x=x8, idx=idx8):
        a, g = layer_grad(x, idx)
        s = a.sum(dim=(2, 3))
        w = torch.where(s != 0, (a * g).sum(dim=(2, 3)) / torch.where(s != 0, s, 1.0), 0.0)
        return wsum(w, a)

    def layercam_limit(x=x8, idx=idx8):
        a, g = layer_grad(x, idx)
        return (g.clamp_min(0) * a).sum(dim=1).clamp_min(0)

    def hirescam_limit(x=x8, idx=idx8):
        a, g = layer_grad(x, idx)
        return (g * a).sum(dim=1).clamp_min(0)

    def eigencam_limit(x=x8):
        _, a = layer_act(x, model._swish, 1)
        o = a.flatten(2).transpose(1, 2)  # (N, hw, K)
        _, _, vh = torch.linalg.svd(o, full_matrices=False)
        proj = (o @ vh[:, 0, :, None])[..., 0]
        sign = torch.where(proj.sum(dim=1, keepdim=True) < 0, -1.0, 1.0)
        return (proj * sign).reshape(a.shape[0], *a.shape[2:])

    def guided_gradcam_run(x, idx, guided: bool):
        active = [False]
        rules = rectifier_rule(model, "guided", active) if guided else contextlib.nullcontext()
        with frozen(model), rules, capture(model._swish, 1) as st:
            xr = x.detach().requires_grad_(True)
            out = model(xr)
            s = out.gather(1, idx[:, None]).sum()
            a = st["out"]
            (ga,) = torch.autograd.grad(s, a, retain_graph=True)
            active[0] = True
            (gx,) = torch.autograd.grad(s, xr)
        cam = wsum(ga.mean(dim=(2, 3)), a.detach())
        up = F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
        return (gx * up).abs().amax(dim=1)

    # ---- multi-pass limits ----------------------------------------------------------------------
    def smoothgrad_noise(x, seed=0):
        n = x.shape[0]
        flat = x.flatten(1)
        sigma = cfg.sg_noise * (flat.amax(dim=1) - flat.amin(dim=1))
        noise = torch.empty((cfg.sg_samples, n, *x.shape[1:]), device=x.device)
        for i in range(n):  # convscope's noise: a CPU generator per image, seed + i
            g = torch.Generator().manual_seed(seed + i)
            noise[:, i] = torch.randn((cfg.sg_samples, *x.shape[1:]), generator=g).to(x.device)
        return (noise * sigma.view(1, n, 1, 1, 1) + x).flatten(0, 1)  # row j * N + i

    def smoothgrad_limit(x=x2, idx=idx2):
        n = x.shape[0]
        with torch.no_grad():
            model(x)  # the clean forward of the passes count (the model's output)
        rows = smoothgrad_noise(x)
        images = torch.arange(rows.shape[0], device=x.device) % n
        total = torch.zeros_like(x)
        with frozen(model):
            for s in range(0, rows.shape[0], cfg.grad_rows):
                xr = rows[s : s + cfg.grad_rows].requires_grad_(True)
                im = images[s : s + cfg.grad_rows]
                out = model(xr)
                (g,) = torch.autograd.grad(out.gather(1, idx[im][:, None]).sum(), xr)
                total.index_add_(0, im, g.abs())
        return (total / cfg.sg_samples).amax(dim=1)

    def ig_limit(x=x2, idx=idx2):
        n = x.shape[0]
        alphas, weights = gauss_legendre(cfg.ig_steps)
        alphas_t, weights_t = (
            torch.tensor(alphas, dtype=x.dtype, device=x.device),
            torch.tensor(weights, dtype=x.dtype, device=x.device),
        )
        with torch.no_grad():
            model(x), model(torch.zeros_like(x))  # input and baseline: the 2 forwards of the count
        total = torch.zeros_like(x)
        rows = n * cfg.ig_steps
        with frozen(model):
            for s in range(0, rows, cfg.grad_rows):
                r = torch.arange(s, min(s + cfg.grad_rows, rows), device=x.device)
                im, k = r % n, r // n
                xr = (x[im] * alphas_t[k].view(-1, 1, 1, 1)).requires_grad_(True)  # baseline 0
                out = model(xr)
                (g,) = torch.autograd.grad(out.gather(1, idx[im][:, None]).sum(), xr)
                total.index_add_(0, im, g * weights_t[k].view(-1, 1, 1, 1))
        return (total * x).sum(dim=1)

    def occlusion_limit(x=x2, idx=idx2):
        n, _, h, w = x.shape
        win, st = cfg.occ_window, cfg.occ_stride
        rs, cs_ = window_starts(h, win, st), window_starts(w, win, st)
        r_mask = torch.zeros(len(rs), h, dtype=torch.bool, device=x.device)
        for i, s in enumerate(rs):
            r_mask[i, s : s + win] = True
        c_mask = torch.zeros(len(cs_), w, dtype=torch.bool, device=x.device)
        for i, s in enumerate(cs_):
            c_mask[i, s : s + win] = True
        k_all = len(rs) * len(cs_)
        total = torch.zeros(n, h, w, device=x.device)
        with torch.no_grad():
            clean = model(x).gather(1, idx[:, None])[:, 0]
            rows = n * k_all
            for s in range(0, rows, cfg.rows):
                r = torch.arange(s, min(s + cfg.rows, rows), device=x.device)
                im, k = r % n, r // n
                mask = r_mask[k // len(cs_), :, None] & c_mask[k % len(cs_), None, :]
                xb = x[im] * (~mask)[:, None]  # baseline 0
                drop = clean[im] - model(xb).gather(1, idx[im][:, None])[:, 0]
                total.index_add_(0, im, drop.view(-1, 1, 1) * mask)
        count = r_mask.sum(0, dtype=x.dtype)[:, None] * c_mask.sum(0, dtype=x.dtype)
        return total / count.clamp_min(1)

    score_module = module_at(model, SCORE_LAYER)

    def scorecam_limit(x=x2, idx=idx2):
        n = x.shape[0]
        _, a = layer_act(x, score_module)
        k_all = a.shape[1]
        flat = a.transpose(0, 1).flatten(0, 1)  # row k * N + i
        scores = torch.empty(k_all * n, device=x.device)
        with torch.no_grad():
            for s in range(0, k_all * n, cfg.rows):
                r = torch.arange(s, min(s + cfg.rows, k_all * n), device=x.device)
                im = r % n
                up = F.interpolate(
                    flat[r][:, None], size=x.shape[-2:], mode="bilinear", align_corners=False
                )
                lo = up.amin(dim=(2, 3), keepdim=True)
                span = up.amax(dim=(2, 3), keepdim=True) - lo
                m = torch.where(span > 0, (up - lo) / torch.where(span > 0, span, 1.0), 0.0)
                scores[s : s + len(r)] = model(x[im] * m).gather(1, idx[im][:, None])[:, 0]
        return wsum(scores.view(k_all, n).T.softmax(dim=1), a)

    b0 = model._blocks[0]

    def tail_after_b0_swish(h):
        """EfficientNet-Lite0 after ``_blocks.0._swish``, by hand (eval mode)."""
        h = b0._bn2(b0._project_conv(h))  # block 0: 32 -> 16 channels, no skip
        for blk in model._blocks[1:]:
            h = blk(h)
        h = model._swish(model._bn1(model._conv_head(h)))
        return model._fc(model._dropout(model._avg_pooling(h).flatten(1)))

    def ablationcam_limit(x=x2, idx=idx2, rows=None):
        n = x.shape[0]
        out, a = layer_act(x, score_module)
        base = out.gather(1, idx[:, None])  # (N, 1)
        k_all = a.shape[1]
        per = max(1, (rows or cfg.rows) // n)  # whole copies of the batch per pass
        abl = torch.empty(k_all, n, device=x.device)
        with torch.no_grad():
            for k0 in range(0, k_all, per):
                ks = torch.arange(k0, min(k0 + per, k_all), device=x.device)
                rows = a.expand(len(ks), *a.shape).clone()  # (copies, N, K, h, w)
                rows[torch.arange(len(ks), device=x.device), :, ks] = 0
                o = tail_after_b0_swish(rows.flatten(0, 1))
                abl[ks] = o.gather(1, idx.repeat(len(ks))[:, None]).view(len(ks), n)
        w = (base - abl.T) / base
        return wsum(w, a)

    # ---- peers ------------------------------------------------------------------------------
    cap = peers.get("captum") if have.get("captum") else None
    tcm = peers.get("torchcam") if have.get("torchcam") else None
    pgc_ok = have.get("pytorch-grad-cam", False)

    def t8():
        return targets_of(x8)

    def t2():
        return targets_of(x2)

    if cap is not None:
        from captum.attr import (
            Deconvolution,
            GuidedBackprop,
            GuidedGradCam,
            IntegratedGradients,
            LayerGradCam,
            NoiseTunnel,
            Occlusion,
            Saliency,
        )

    if tcm is not None:
        from torchcam.methods import CAM as TcCAM
        from torchcam.methods import GradCAM as TcGradCAM
        from torchcam.methods import GradCAMpp as TcGradCAMpp
        from torchcam.methods import LayerCAM as TcLayerCAM
        from torchcam.methods import ScoreCAM as TcScoreCAM
        from torchcam.methods import XGradCAM as TcXGradCAM

        def torchcam_entry(cls, layer, x, needs_grad=True, **kw) -> Callable[[], torch.Tensor]:
            ext = cls(model, target_layer=layer, **kw)
            ext.disable_hooks()
            cleanups.append(ext.remove_hooks)
            t = targets_of(x)

            def run():
                ext.enable_hooks()
                try:
                    if needs_grad:
                        scores = model(x)
                    else:
                        with torch.no_grad():
                            scores = model(x)
                    (cam,) = ext(class_idx=t, scores=scores, normalized=False)
                finally:
                    ext.disable_hooks()
                    ext.reset_hooks()
                return cam

            return run

    if pgc_ok:
        from pytorch_grad_cam import (
            AblationCAM,
            EigenCAM,
            GradCAMPlusPlus,
            GuidedBackpropReLUModel,
            HiResCAM,
            LayerCAM,
            ScoreCAM,
            XGradCAM,
        )
        from pytorch_grad_cam import GradCAM as PgcGradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        pm = copy.deepcopy(model)  # its own copy: pgc swaps modules (Ablation-CAM), fills .grad
        pm._swish = _SplitReLU6()
        pm_score = module_at(pm, SCORE_LAYER)

        def pgc_entry(cls, layer, x, **attrs) -> Callable[[], np.ndarray]:
            tg = [ClassifierOutputTarget(c) for c in targets_of(x)]

            def run():
                with cls(model=pm, target_layers=[layer]) as cam:
                    for k, v in attrs.items():
                        setattr(cam, k, v)
                    return cam(input_tensor=x, targets=tg)

            return run

        def pgc_guided(x):
            gb = GuidedBackpropReLUModel(model=pm, device=x.device)
            t = targets_of(x)

            def run():  # one image per call, as its API takes; plain gradient on ReLU6 models
                return np.stack(
                    [gb(x[i : i + 1].clone(), target_category=t[i]) for i in range(len(t))]
                )

            return run

    def pgc_map(o):
        return torch.from_numpy(np.asarray(o))

    def amax_abs(o):
        return o.abs().amax(dim=1)

    # =========================================================================================
    e: list[Entry]
    # saliency
    e = [
        Entry("limit", "limit", saliency_limit),
        Entry("convscope", "convscope", cs("saliency", x8)),
    ]
    if cap:
        sal = Saliency(model)
        e.append(
            Entry(
                "captum Saliency",
                "captum",
                lambda: sal.attribute(x8, target=t8(), abs=True),
                amax_abs,
            )
        )
    groups["saliency"] = Group("saliency", n8, e)

    # guided backprop / deconvnet: the limit is the plain pass; the map reference applies the rule
    e = [
        Entry("limit (plain pass)", "limit", saliency_limit),
        Entry("convscope", "convscope", cs("guided_backprop", x8)),
    ]
    if cap:
        gbp = GuidedBackprop(model)
        e.append(
            Entry(
                "captum GuidedBackprop",
                "captum",
                lambda: gbp.attribute(x8, target=t8()),
                amax_abs,
                expect="captum overrides nn.ReLU only: plain gradient through ReLU6",
            )
        )
    if pgc_ok:
        e.append(
            Entry(
                "pgc GuidedBackpropReLUModel (per image)",
                "pytorch-grad-cam",
                pgc_guided(x8),
                lambda o: torch.from_numpy(o).abs().amax(dim=-1),
                expect="pgc replaces nn.ReLU only: plain gradient through ReLU6",
            )
        )
    groups["guided_backprop"] = Group("guided_backprop", n8, e, reference=rule_reference("guided"))

    e = [
        Entry("limit (plain pass)", "limit", saliency_limit),
        Entry("convscope", "convscope", cs("deconvnet", x8)),
    ]
    if cap:
        dec = Deconvolution(model)
        e.append(
            Entry(
                "captum Deconvolution",
                "captum",
                lambda: dec.attribute(x8, target=t8()),
                amax_abs,
                expect="captum overrides nn.ReLU only: plain gradient through ReLU6",
            )
        )
    groups["deconvnet"] = Group("deconvnet", n8, e, reference=rule_reference("deconvnet"))

    e = [
        Entry("limit (plain passes)", "limit", lambda: guided_gradcam_run(x8, idx8, False)),
        Entry("convscope", "convscope", cs("guided_gradcam", x8, layer=HEAD)),
    ]
    if cap:
        ggc = GuidedGradCam(model, model._swish)
        e.append(
            Entry(
                "captum GuidedGradCam",
                "captum",
                lambda: ggc.attribute(x8, target=t8(), interpolate_mode="bilinear"),
                amax_abs,
                expect="captum's guided part is the plain gradient on ReLU6 (nn.ReLU only)",
            )
        )
    groups["guided_gradcam"] = Group(
        "guided_gradcam", n8, e, reference=lambda: guided_gradcam_run(x8, idx8, True)
    )

    # CAM
    e = [
        Entry("limit", "limit", cam_limit),
        Entry("convscope", "convscope", cs("cam", x8, layer=HEAD)),
    ]
    if tcm:
        e.append(
            Entry(
                "torchcam CAM",
                "torchcam",
                torchcam_entry(TcCAM, "_swish", x8, needs_grad=False, fc_layer="_fc"),
            )
        )
    groups["cam"] = Group("cam", n8, e)

    # gradient CAMs at the head
    specs = [
        ("gradcam", gradcam_limit, "GradCAM", "GradCAM", "GradCAM"),
        ("gradcam++", gradcampp_limit, None, "GradCAMpp", "GradCAMPlusPlus"),
        ("xgradcam", xgradcam_limit, None, "XGradCAM", "XGradCAM"),
        ("layercam", layercam_limit, None, "LayerCAM", "LayerCAM"),
        ("hirescam", hirescam_limit, None, None, "HiResCAM"),
    ]
    for method, limit, cap_name, tc_name, pgc_name in specs:
        e = [
            Entry("limit", "limit", limit),
            Entry("convscope", "convscope", cs(method, x8, layer=HEAD)),
        ]
        if cap and cap_name:
            lgc = LayerGradCam(model, model._swish)
            e.append(
                Entry(
                    "captum LayerGradCam",
                    "captum",
                    lambda lgc=lgc: lgc.attribute(x8, target=t8(), relu_attributions=True)[:, 0],
                )
            )
        if tcm and tc_name:
            cls = {
                "GradCAM": TcGradCAM,
                "GradCAMpp": TcGradCAMpp,
                "XGradCAM": TcXGradCAM,
                "LayerCAM": TcLayerCAM,
            }[tc_name]
            e.append(
                Entry(
                    f"torchcam {tc_name}",
                    "torchcam",
                    torchcam_entry(cls, "_swish", x8),
                    expect="torchcam 0.5's Grad-CAM++ weights differ (see gradcampp.py)"
                    if method == "gradcam++"
                    else "",
                )
            )
        if pgc_ok and pgc_name:
            cls = {
                "GradCAM": PgcGradCAM,
                "GradCAMPlusPlus": GradCAMPlusPlus,
                "XGradCAM": XGradCAM,
                "LayerCAM": LayerCAM,
                "HiResCAM": HiResCAM,
            }[pgc_name]
            e.append(
                Entry(
                    f"pgc {pgc_name}",
                    "pytorch-grad-cam",
                    pgc_entry(cls, pm._swish.head, x8),
                    pgc_map,
                    expect="pgc adds eps=1e-6 to the alpha denominator, the size of g^2 at this "
                    "layer (median g^2 ~7e-7); with that eps the maps agree to 3e-7"
                    if method == "gradcam++"
                    else "",
                    note="normalized, resized to 224 (cv2)",
                    normalized=True,
                )
            )
        groups[method] = Group(method, n8, e, tol=1e-4)

    # Eigen-CAM
    e = [
        Entry("limit", "limit", eigencam_limit),
        Entry("convscope", "convscope", cs("eigencam", x8, layer=HEAD)),
    ]
    if pgc_ok:
        e.append(
            Entry(
                "pgc EigenCAM",
                "pytorch-grad-cam",
                pgc_entry(EigenCAM, pm._swish.head, x8),
                pgc_map,
                expect="pgc centers the activations before the SVD (the paper does not)",
                normalized=True,
            )
        )
    groups["eigencam"] = Group("eigencam", n8, e)

    # ---- multi-pass ---------------------------------------------------------------------------
    e = [
        Entry("limit", "limit", smoothgrad_limit),
        Entry(
            "convscope",
            "convscope",
            cs(
                "smoothgrad",
                x2,
                batch_size=cfg.grad_rows,
                n_samples=cfg.sg_samples,
                noise=cfg.sg_noise,
                seed=0,
            ),
        ),
    ]
    if cap:
        nt = NoiseTunnel(Saliency(model))
        flat = x2.flatten(1)
        sig = float(cfg.sg_noise * (flat.amax(1) - flat.amin(1)).mean())
        e.append(
            Entry(
                "captum NoiseTunnel(Saliency)",
                "captum",
                lambda: nt.attribute(
                    x2,
                    nt_type="smoothgrad",
                    nt_samples=cfg.sg_samples,
                    nt_samples_batch_size=max(1, cfg.grad_rows // x2.shape[0]),
                    stdevs=sig,
                    target=t2(),
                    abs=True,
                ),
                amax_abs,
                expect="captum: one noise level for the batch and its own noise draws "
                "(one image, same seed: checked separately)",
            )
        )
    groups["smoothgrad"] = Group("smoothgrad", n2, e, tol=1e-4, multi=True)

    e = [
        Entry("limit", "limit", ig_limit),
        Entry(
            "convscope",
            "convscope",
            cs("integrated_gradients", x2, batch_size=cfg.grad_rows, steps=cfg.ig_steps),
        ),
    ]
    if cap:
        ig = IntegratedGradients(model)
        e.append(
            Entry(
                "captum IntegratedGradients",
                "captum",
                lambda: ig.attribute(
                    x2,
                    baselines=0.0,
                    target=t2(),
                    n_steps=cfg.ig_steps,
                    method="gausslegendre",
                    internal_batch_size=cfg.grad_rows,
                ),
                lambda o: o.sum(dim=1),
            )
        )
    groups["integrated_gradients"] = Group("integrated_gradients", n2, e, tol=1e-4, multi=True)

    e = [
        Entry("limit", "limit", occlusion_limit),
        Entry(
            "convscope",
            "convscope",
            cs(
                "occlusion",
                x2,
                batch_size=cfg.rows,
                window=cfg.occ_window,
                stride=cfg.occ_stride,
            ),
        ),
    ]
    if cap:
        occ = Occlusion(model)
        e.append(
            Entry(
                "captum Occlusion",
                "captum",
                lambda: occ.attribute(
                    x2,
                    sliding_window_shapes=(3, cfg.occ_window, cfg.occ_window),
                    strides=(3, cfg.occ_stride, cfg.occ_stride),
                    baselines=0.0,
                    target=t2(),
                    perturbations_per_eval=max(1, cfg.rows // x2.shape[0]),
                ),
                lambda o: o[:, 0],
            )
        )
    groups["occlusion"] = Group("occlusion", n2, e, tol=1e-4, multi=True)

    e = [
        Entry("limit", "limit", scorecam_limit),
        Entry("convscope", "convscope", cs("scorecam", x2, layer=SCORE_LAYER, batch_size=cfg.rows)),
    ]
    if tcm:
        e.append(
            Entry(
                "torchcam ScoreCAM",
                "torchcam",
                torchcam_entry(TcScoreCAM, SCORE_LAYER, x2, needs_grad=False, batch_size=cfg.rows),
                expect="torchcam normalizes each channel before upsampling (see scorecam.py)",
            )
        )
    if pgc_ok:
        e.append(
            Entry(
                "pgc ScoreCAM",
                "pytorch-grad-cam",
                pgc_entry(ScoreCAM, pm_score, x2, batch_size=cfg.rows),
                pgc_map,
                expect="pgc upsamples with align_corners=True",
                note="per image; normalized, resized to 224",
                normalized=True,
            )
        )
    groups["scorecam"] = Group("scorecam", n2, e, tol=1e-4, multi=True)

    e = [
        Entry(f"limit (hand-written tail), {cfg.rows} rows/pass", "limit", ablationcam_limit),
        Entry(
            f"limit (hand-written tail), {n2} rows/pass",
            "limit",
            lambda: ablationcam_limit(rows=n2),
            note="convscope's Tail is not batchable at this layer and runs N rows per pass",
        ),
        Entry(
            "convscope", "convscope", cs("ablationcam", x2, layer=SCORE_LAYER, batch_size=cfg.rows)
        ),
    ]
    if pgc_ok:

        def pgc_ablation():
            tg = [ClassifierOutputTarget(c) for c in t2()]
            with AblationCAM(model=pm, target_layers=[pm_score], batch_size=cfg.rows) as cam:
                return cam(input_tensor=x2, targets=tg)

        e.append(
            Entry(
                "pgc AblationCAM",
                "pytorch-grad-cam",
                pgc_ablation,
                pgc_map,
                note="per image, whole model per ablated row; normalized, resized to 224",
                normalized=True,
            )
        )
    groups["ablationcam"] = Group("ablationcam", n2, e, tol=1e-4, multi=True)

    return {"groups": groups, "cleanup": lambda: [c() for c in cleanups]}


# --------------------------------------------------------------------------------------------
# checks and timing
# --------------------------------------------------------------------------------------------
def rel_err(m: torch.Tensor, r: torch.Tensor) -> float:
    return (m - r).abs().max().item() / max(r.abs().max().item(), 1e-12)


def check_group(g: Group) -> list[str]:
    """Compare every entry's map with the reference; raise if a limit or convscope disagrees."""
    notes = []
    limit = next(en for en in g.entries if en.kind == "limit")
    ref = (g.reference or limit.fn)()
    ref = ref.detach().float().cpu()
    for en in g.entries:
        if en.kind == "limit":
            continue  # the reference itself, or (with a separate reference) only the passes
        out = en.fn()
        m = en.compare(out) if en.compare is not None else out
        m = m.detach().float().cpu() if isinstance(m, torch.Tensor) else torch.as_tensor(m).float()
        r = ref
        if en.normalized:
            r = normalize_like_pgc(ref, m.shape[-1])
        if m.shape != r.shape:
            msg = f"{g.method}: {en.name} map shape {tuple(m.shape)} vs reference {tuple(r.shape)}"
            if en.expect:
                notes.append(msg + f" ({en.expect})")
                continue
            raise SystemExit(msg)
        err = (m - r).abs().max().item() if en.normalized else rel_err(m, r)
        tol = 1e-3 if en.normalized else g.tol
        what = "max abs error (maps in [0, 1])" if en.normalized else "max rel. error"
        if err > tol:
            if en.expect:
                extra = ""
                if g.reference is not None and not en.normalized:  # vs the plain passes' map
                    plain = limit.fn().detach().float().cpu()
                    extra = f" (vs the plain gradient's map: {rel_err(m, plain):.1e})"
                notes.append(f"{g.method}: {en.name} differs, {what} {err:.2e}{extra}: {en.expect}")
                continue
            raise SystemExit(
                f"{g.method}: {en.name} disagrees with the reference: {what} {err:.2e}"
            )
        notes.append(f"{g.method}: {en.name} matches ({what} {err:.1e})")
    return notes


def check_smoothgrad_single(bundle, x: torch.Tensor, cfg: Config) -> str:
    """convscope's SmoothGrad of one image with seed s == captum NoiseTunnel under manual_seed(s)."""
    from captum.attr import NoiseTunnel, Saliency

    x1 = x[:1]
    t = TARGETS[:1]
    ours = convscope.explain(
        bundle,
        x1,
        method="smoothgrad",
        target=t,
        n_samples=cfg.sg_samples,
        noise=cfg.sg_noise,
        seed=3,
    ).raw_maps
    flat = x1.flatten(1)
    sig = float(cfg.sg_noise * (flat.amax(1) - flat.amin(1)))
    torch.manual_seed(3)
    theirs = (
        NoiseTunnel(Saliency(bundle.model))
        .attribute(
            x1, nt_type="smoothgrad", nt_samples=cfg.sg_samples, stdevs=sig, target=t, abs=True
        )
        .amax(dim=1)
    )
    return f"smoothgrad: one image, seed 3: convscope vs captum NoiseTunnel max rel. error {rel_err(ours, theirs):.1e}"


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def time_group(g: Group, reps: int, warmup: int) -> dict[str, list[float]]:
    """Median-ready times (ms) of every entry; on a GPU each call is timed between two device
    synchronizations (the work it queued is counted, and nothing of the previous call)."""
    for _ in range(warmup):
        for en in g.entries:
            en.fn()
    times: dict[str, list[float]] = {en.name: [] for en in g.entries}
    n = len(g.entries)
    for r in range(reps):
        k = r % n
        for en in g.entries[k:] + g.entries[:k]:
            _sync()
            t0 = time.perf_counter()
            en.fn()
            _sync()
            times[en.name].append((time.perf_counter() - t0) * 1e3)
    return times


def memory_group(g: Group) -> dict[str, float]:
    """Peak CUDA memory (MiB) each entry allocates above what was allocated before it ran."""
    out = {}
    for en in g.entries:
        _sync()
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        en.fn()
        _sync()
        out[en.name] = (torch.cuda.max_memory_allocated() - before) / 2**20
    return out


def _quartiles(t: list[float]) -> tuple[float, float]:
    if len(t) < 4:
        return min(t), max(t)
    q = statistics.quantiles(t, n=4)
    return q[0], q[2]


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------
PEER_KINDS = ("captum", "torchcam", "pytorch-grad-cam")


def summary_rows(groups: dict[str, Group], times: dict[str, dict[str, list[float]]], cfg: Config):
    rows = []
    for method, g in groups.items():
        if method not in times:
            continue
        med = {n: statistics.median(t) for n, t in times[method].items()}
        lim = min((en.name for en in g.entries if en.kind == "limit"), key=med.__getitem__)
        ours = med["convscope"]
        peer_cells = []
        worst = 0.0
        for kind in PEER_KINDS:
            names = [en.name for en in g.entries if en.kind == kind]
            if not names:
                peer_cells.append("—")
                continue
            best = min(names, key=med.__getitem__)
            ratio = ours / med[best]
            worst = max(worst, ratio)
            peer_cells.append(f"{med[best]:.0f} ms ({ratio:.2f}x)")
        vs_limit = ours / med[lim]
        ok_limit = "✓" if vs_limit <= 1.15 else "✗"
        ok_peer = "—" if worst == 0 else ("✓" if worst <= 1.0 else "✗")
        cfg_text = f"{g.images} img" + (f", {cfg.describe(method)}" if cfg.describe(method) else "")
        rows.append(
            (
                method,
                cfg_text,
                f"{med[lim]:.0f}",
                f"{ours:.0f}",
                f"{vs_limit:.2f}x {ok_limit}",
                *peer_cells,
                ok_peer,
            )
        )
    head = (
        "method",
        "config",
        "limit ms",
        "convscope ms",
        "/ limit (≤1.15)",
        "captum (convscope/peer)",
        "torchcam",
        "pytorch-grad-cam",
        "≤ every peer",
    )
    return head, rows


def detail_rows(groups: dict[str, Group], times: dict[str, dict[str, list[float]]]):
    rows = []
    for method, g in groups.items():
        if method not in times:
            continue
        t = times[method]
        med = {n: statistics.median(v) for n, v in t.items()}
        lim = min((en.name for en in g.entries if en.kind == "limit"), key=med.__getitem__)
        for en in g.entries:
            q1, q3 = _quartiles(t[en.name])
            rows.append(
                (
                    method,
                    en.name,
                    f"{med[en.name]:.1f}",
                    f"{q1:.1f}-{q3:.1f}",
                    f"{min(t[en.name]):.1f}",
                    f"{med[en.name] / med[lim]:.2f}x",
                    "" if en.name == "convscope" else f"{med['convscope'] / med[en.name]:.2f}x",
                )
            )
    head = ("method", "entry", "median ms", "IQR ms", "min ms", "/ limit", "convscope / this")
    return head, rows


def render(head, rows, markdown: bool) -> str:
    if markdown:
        lines = [
            "| " + " | ".join(head) + " |",
            "|" + "|".join(["---"] * 2 + ["--:"] * (len(head) - 2)) + "|",
        ]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:{'<' if i < 2 else '>'}{w[i]}}}" for i in range(len(head)))
    return "\n".join(
        [fmt.format(*head), fmt.format(*("-" * x for x in w))] + [fmt.format(*r) for r in rows]
    )


# --------------------------------------------------------------------------------------------
# profiling (--profile): where convscope's time goes, next to its limit
# --------------------------------------------------------------------------------------------
def profile_group(g: Group, top: int = 12) -> str:
    from torch.profiler import ProfilerActivity, profile

    out = [f"### {g.method}"]
    for en in g.entries:
        if en.kind not in ("limit", "convscope"):
            continue
        en.fn()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            en.fn()
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)
        out.append(f"#### {en.name}\n```\n{table}\n```")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
def machine() -> str:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return f"{torch.cuda.get_device_name()} (TF32 off), CUDA {torch.version.cuda}"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(
            ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")
        )
    except Exception:
        return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=15, help="timed rounds, single-pass methods")
    p.add_argument("--reps-multi", type=int, default=5, help="timed rounds, multi-pass methods")
    p.add_argument("--batch", type=int, default=8, help="images, single-pass methods (default 8)")
    p.add_argument("--multi-batch", type=int, default=2, help="images, multi-pass methods")
    p.add_argument("--rows", type=int, default=4, help="rows per forward-only pass")
    p.add_argument("--grad-rows", type=int, default=4, help="rows per forward+backward pass")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--only", default="", help="comma-separated methods (default: all)")
    p.add_argument("--markdown", action="store_true", help="print GitHub tables")
    p.add_argument("--profile", action="store_true", help="torch.profiler: convscope vs limit")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda; TF32 is turned off")
    p.add_argument(
        "--size",
        type=int,
        default=224,
        help="input side in pixels (default 224; 32 makes the passes cheap, so per-call "
        "overhead shows on a CPU as it does on a GPU)",
    )
    p.add_argument("--memory", action="store_true", help="CUDA: peak memory per entry (MiB)")
    a = p.parse_args(argv)

    device = torch.device(a.device)
    if device.type == "cuda":  # full float32 everywhere, as on the CPU: maps comparable
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")
    torch.manual_seed(a.seed)
    cfg = Config(rows=a.rows, grad_rows=a.grad_rows)
    bundle = convscope.load_model("efficientnet_lite0", device=device)
    x8 = torch.randn(a.batch, 3, a.size, a.size).to(device)
    x2 = torch.randn(a.multi_batch, 3, a.size, a.size).to(device)
    peers = peers_available()
    built = build_groups(bundle, cfg, x8, x2, peers)
    groups: dict[str, Group] = built["groups"]
    wanted = [m.strip() for m in a.only.split(",") if m.strip()] or SINGLE + MULTI
    unknown = set(wanted) - set(groups)
    if unknown:
        p.error(f"unknown methods: {', '.join(sorted(unknown))}")
    assert set(groups) == set(convscope.methods()), set(convscope.methods()) ^ set(groups)

    notes: list[str] = []
    times: dict[str, dict[str, list[float]]] = {}
    memory: dict[str, dict[str, float]] = {}
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    try:
        for method in wanted:
            g = groups[method]
            notes += check_group(g)
            if method == "smoothgrad" and not isinstance(peers.get("captum"), Exception):
                notes.append(check_smoothgrad_single(bundle, x2, cfg))
            t0 = time.perf_counter()
            reps = a.reps_multi if g.multi else a.reps
            times[method] = time_group(g, reps, warmup=1 if g.multi else 3)
            if a.memory and device.type == "cuda":
                memory[method] = memory_group(g)
            print(
                f"# {method}: {time.perf_counter() - t0:.0f} s, load {os.getloadavg()[0]:.1f}",
                file=sys.stderr,
                flush=True,
            )
        profiles = [profile_group(groups[m]) for m in wanted] if a.profile else []
    finally:
        built["cleanup"]()
    elapsed = time.perf_counter() - t_start

    vers = [f"torch {torch.__version__}"]
    for k, v in peers.items():
        if not isinstance(v, Exception):
            v = version(k.replace("pytorch-grad-cam", "grad-cam"))
        vers.append(
            f"{k} {v}"
            if not isinstance(v, Exception)
            else f"{k}: not importable ({type(v).__name__}: {str(v).splitlines()[0][:80]})"
        )
    print(
        f"# convscope {getattr(convscope, '__version__', '?')}, {', '.join(vers)}, {machine()}, "
        f"{torch.get_num_threads()} threads, python {platform.python_version()}, "
        f"{datetime.date.today().isoformat()}; {a.size} px; single-pass: {a.batch} images, "
        f"{a.reps} rounds; "
        f"multi-pass: {a.multi_batch} images, {a.reps_multi} rounds; total {elapsed:.0f} s; "
        f"1-min load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    )
    print()
    print(render(*summary_rows({m: groups[m] for m in wanted}, times, cfg), a.markdown))
    print()
    print(render(*detail_rows({m: groups[m] for m in wanted}, times), a.markdown))
    print()
    if memory:
        head = ("method", "entry", "peak MiB above inputs", "/ limit")
        rows = []
        for method, mem in memory.items():
            lim = min(
                (en.name for en in groups[method].entries if en.kind == "limit"),
                key=lambda k, mem=mem: mem[k],
            )
            for name, mib in mem.items():
                rows.append((method, name, f"{mib:.0f}", f"{mib / max(mem[lim], 1e-9):.2f}x"))
        print(render(head, rows, a.markdown))
        print()
    for n in notes:
        print(("- " if a.markdown else "") + n)
    for text in profiles:
        print()
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
