"""Objectives: what an image is optimized to excite, as objects with algebra.

An objective gives one value per image (higher is better). The leaves name a class output or a
unit inside the network (through :mod:`convscope.core.units`); penalties on the image itself
(:func:`l2`, :func:`total_variation`) and Lucid's batch :func:`diversity` are objectives too, so
``"class:flamingo" - 1e-3 * l2()`` or ``channel("_blocks.10:5") + 0.5 * diversity("_blocks.10")``
is an objective (Olah et al., *Feature Visualization*, Distill 2017; Lucid's ``objectives.py``).

Strings (the CLI and :func:`convscope.visualize` read them with :func:`parse_objective`)::

    class:flamingo   class:130    the pre-softmax logit of a class (name or index)
    prob:flamingo                 its softmax probability (see :class:`ClassScore` for why the
                                  logit is the default)
    channel:LAYER:K               the mean of channel K's map            (Unit "LAYER:K")
    neuron:LAYER:K                the centre unit of channel K's map
    neuron:LAYER:K:I:J            the unit at row I, column J            (Unit "LAYER:K:I:J")
    ("direction:LAYER", vector)   the activations' projection on a direction (a tuple)

An objective is first written without a model, then *bound* to one (:meth:`Objective.bind`): class
names and layers are resolved by the core exactly as everywhere else, and each unit is checked
against the shape its layer really has, so every mistake is an error before any optimization.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from convscope.core.units import Unit, parse_unit
from convscope.errors import ConvscopeError, LayerError, TargetError

__all__ = [
    "ClassScore",
    "Objective",
    "Probe",
    "channel",
    "class_score",
    "custom",
    "direction",
    "diversity",
    "l2",
    "neuron",
    "parse_objective",
    "total_variation",
]

KINDS = ("class", "prob", "logprob", "channel", "neuron", "direction")


@dataclass
class Probe:
    """What an objective reads for a group of images: the image before transforms (``image``,
    display pixels in [0, 1], (n, 3, H, W)), the colour ``center`` where the model input is 0
    ((3,), the preprocessing's mean), the model ``output`` and the recorded ``activations`` (by
    layer spec), all restricted to the group's rows."""

    image: torch.Tensor
    center: torch.Tensor
    output: torch.Tensor | None
    activations: Mapping[str, torch.Tensor]


@dataclass
class Env:
    """What binding needs: the model, its class names, and the shape of each layer's output and of
    the model output on one image of the size visualized (from a dry run)."""

    model: nn.Module
    class_names: Sequence[str] | None
    shapes: Mapping[str, tuple[int, ...]]
    output_shape: tuple[int, ...] | None


Bound = Callable[[Probe], torch.Tensor]


class Objective:
    """Something to maximize: one value per image. Add, subtract, negate and scale objectives with
    numbers (``a + b``, ``a - 0.1 * b``, ``-a``, ``a / 2``, ``a + 1``) to make new ones."""

    name: str = "objective"

    def layers(self) -> list[str]:
        """The layer specs (``"_blocks.10"``, ``"_swish@1"``) whose outputs this objective reads."""
        return []

    def needs_output(self) -> bool:
        return False

    def bind(self, env: Env) -> Bound:
        """Resolve names and check shapes against ``env``; return ``probe -> (n,) values``."""
        raise NotImplementedError

    # -- algebra --------------------------------------------------------------------------------
    def __add__(self, other: Any) -> Objective:
        return Sum.of(self, 1.0) + other

    def __radd__(self, other: Any) -> Objective:
        return self + other

    def __sub__(self, other: Any) -> Objective:
        return self + (-1.0) * _as_term(other)

    def __rsub__(self, other: Any) -> Objective:
        return (-1.0) * self + other

    def __neg__(self) -> Objective:
        return (-1.0) * self

    def __mul__(self, k: Any) -> Objective:
        return Sum.of(self, _number(k, "multiply"))

    def __rmul__(self, k: Any) -> Objective:
        return self * k

    def __truediv__(self, k: Any) -> Objective:
        k = _number(k, "divide")
        if k == 0:
            raise ConvscopeError("an objective cannot be divided by 0")
        return self * (1.0 / k)

    def __repr__(self) -> str:
        return f"Objective({self.name})"

    def __str__(self) -> str:
        return self.name


def _number(k: Any, what: str) -> float:
    if isinstance(k, bool) or not isinstance(k, int | float) or not math.isfinite(k):
        raise TypeError(f"an objective can only {what} by a finite number, not {k!r}")
    return float(k)


def _as_term(other: Any) -> Objective | float:
    if isinstance(other, Objective):
        return other
    if isinstance(other, str | tuple):
        return parse_objective(other)
    return _number(other, "add")


class Sum(Objective):
    """``constant + sum_i weight_i * term_i``: what the algebra builds."""

    def __init__(self, terms: list[tuple[float, Objective]], constant: float = 0.0) -> None:
        self.terms = terms
        self.constant = constant

    @staticmethod
    def of(obj: Objective, weight: float) -> Sum:
        if isinstance(obj, Sum):
            return Sum([(weight * w, t) for w, t in obj.terms], weight * obj.constant)
        return Sum([(weight, obj)])

    def __add__(self, other: Any) -> Objective:
        other = _as_term(other)
        if isinstance(other, float):
            return Sum(list(self.terms), self.constant + other)
        o = Sum.of(other, 1.0)
        return Sum(self.terms + o.terms, self.constant + o.constant)

    @property
    def name(self) -> str:  # type: ignore[override]
        parts = []
        for w, t in self.terms:
            inner = f"({t.name})" if isinstance(t, Sum) else t.name
            sign = "-" if w < 0 else "+"
            mag = abs(w)
            text = inner if mag == 1 else f"{mag:g} * {inner}"
            parts.append((sign, text))
        if self.constant:
            parts.append(("-" if self.constant < 0 else "+", f"{abs(self.constant):g}"))
        if not parts:
            return "0"
        first_sign, first = parts[0]
        out = ("-" if first_sign == "-" else "") + first
        return out + "".join(f" {s} {t}" for s, t in parts[1:])

    def layers(self) -> list[str]:
        return list(dict.fromkeys(spec for _, t in self.terms for spec in t.layers()))

    def needs_output(self) -> bool:
        return any(t.needs_output() for _, t in self.terms)

    def bind(self, env: Env) -> Bound:
        bound = [(w, t.bind(env)) for w, t in self.terms]
        constant = self.constant

        def value(p: Probe) -> torch.Tensor:
            total = torch.full((p.image.shape[0],), constant, device=p.image.device)
            for w, f in bound:
                total = total + w * f(p)
            return total

        return value


# -- class outputs ------------------------------------------------------------------------------
class ClassScore(Objective):
    """A class output: the pre-softmax logit (``score="logit"``, the default), the softmax
    probability (``"prob"``) or its log (``"logprob"``).

    The logit is the default, as in Simonyan et al. 2014 (Deep Inside Convolutional Networks,
    section 2): the probability can also rise by lowering the *other* classes' logits, so maximizing
    it yields images that are about what the class is not; the logit only grows with evidence for
    the class itself.
    """

    def __init__(self, cls: int | str, score: str = "logit") -> None:
        if score not in ("logit", "prob", "logprob"):
            raise TargetError(f"unknown class score {score!r}; use logit, prob or logprob")
        if isinstance(cls, bool) or not isinstance(cls, int | str):
            raise TargetError(f"a class is an index or a name, not {cls!r}")
        self.cls = cls
        self.score = score

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{'class' if self.score == 'logit' else self.score}:{self.cls}"

    def needs_output(self) -> bool:
        return True

    def index(self, env: Env) -> int:
        """The class index in ``env``'s model (names resolved as for every target)."""
        from convscope.core.targets import _one

        if env.output_shape is None or len(env.output_shape) != 2:
            raise TargetError(
                f"objective {self.name}: a class objective needs a model output of shape "
                f"(N, classes); this model gives {env.output_shape}"
            )
        n = env.output_shape[1]
        cls = self.cls
        if isinstance(cls, str) and cls.strip().lower().startswith("top"):
            raise TargetError(f"objective {self.name}: name a class, not a rank")
        idx, _ = _one(cls, env.class_names)
        if idx is None or not 0 <= idx < n:
            raise TargetError(
                f"objective {self.name}: class index {idx} is out of range: the model has {n} "
                f"classes (0..{n - 1})"
            )
        return idx

    def bind(self, env: Env) -> Bound:
        idx = self.index(env)
        score = self.score

        def value(p: Probe) -> torch.Tensor:
            out = p.output
            if score == "prob":
                return out.softmax(dim=1)[:, idx]
            if score == "logprob":
                return out.log_softmax(dim=1)[:, idx]
            return out[:, idx]

        return value


def class_score(cls: int | str, score: str = "logit") -> ClassScore:
    """A class output as an objective (see :class:`ClassScore`)."""
    return ClassScore(cls, score)


# -- units inside the network -------------------------------------------------------------------
class _UnitObjective(Objective):
    kind = "channel"

    def __init__(self, unit: str | Unit) -> None:
        self.unit = parse_unit(unit)

    def layers(self) -> list[str]:
        return [self.unit.layer]

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.kind}:{self.unit.spec}"

    def _shape(self, env: Env) -> tuple[int, ...]:
        return _layer_shape(env, self.unit.layer, self.name)


def _layer_shape(env: Env, layer: str, what: str) -> tuple[int, ...]:
    from convscope.core.layers import resolve_layer

    ref = resolve_layer(env.model, layer)  # closest-match error for an unknown name
    shape = env.shapes.get(ref.spec)
    if shape is None:
        raise LayerError(f"objective {what}: layer {ref.spec} did not run in the forward pass")
    return shape


class Channel(_UnitObjective):
    """The mean over positions of channel K's map (``LAYER:K``), as :meth:`Unit.value` defines it."""

    kind = "channel"

    def __init__(self, unit: str | Unit) -> None:
        super().__init__(unit)
        if self.unit.kind != "channel":
            raise LayerError(
                f"a channel objective names LAYER:K, not {self.unit.spec!r} "
                "(use neuron:LAYER:K:I:J for one position)"
            )

    def bind(self, env: Env) -> Bound:
        unit = self.unit
        unit.check(self._shape(env))
        return lambda p: unit.value(p.activations[unit.layer])


class Neuron(_UnitObjective):
    """One unit of a feature map: channel K at (I, J), by default at the centre
    ``(H // 2, W // 2)`` of the map (the unit whose receptive field is centred on the image)."""

    kind = "neuron"

    def __init__(self, unit: str | Unit) -> None:
        super().__init__(unit)
        if self.unit.kind == "layer":
            raise LayerError(f"a neuron objective names LAYER:K or LAYER:K:I:J, not {unit!r}")

    def bind(self, env: Env) -> Bound:
        shape = self._shape(env)
        unit = self.unit
        if len(shape) != 4:
            raise LayerError(
                f"objective {self.name}: a neuron needs a 4-D (N, C, H, W) layer output; "
                f"{unit.layer} gives {shape}"
            )
        if unit.position is None:
            unit = unit.at(position=(shape[2] // 2, shape[3] // 2))
        unit.check(shape)
        return lambda p: unit.value(p.activations[unit.layer])


class Direction(Objective):
    """The projection of the activations on a unit direction ``v / ||v||`` (C,), averaged over
    the map's positions: ``mean_{i,j} <a[:, :, i, j], v> / ||v||``. Channel K is the direction
    ``e_K``. (Lucid's ``direction`` uses the cosine similarity instead, which also rewards a
    *smaller* activation vector; the projection is what a channel objective generalizes.)"""

    def __init__(self, layer: str, vector: Any) -> None:
        if not isinstance(layer, str) or not layer.strip():
            raise LayerError(f"a direction objective needs a layer name, not {layer!r}")
        v = torch.as_tensor(vector, dtype=torch.float32).detach().flatten().cpu()
        if v.numel() == 0 or not torch.isfinite(v).all() or float(v.norm()) == 0:
            raise ConvscopeError("a direction is a non-zero finite vector, one value per channel")
        self.layer = layer.strip()
        self.vector = v / v.norm()

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"direction:{self.layer}"

    def layers(self) -> list[str]:
        return [self.layer]

    def bind(self, env: Env) -> Bound:
        shape = _layer_shape(env, self.layer, self.name)
        if len(shape) not in (2, 4):
            raise LayerError(
                f"objective {self.name}: a direction needs an (N, C) or (N, C, H, W) output; "
                f"{self.layer} gives {shape}"
            )
        if shape[1] != self.vector.numel():
            raise LayerError(
                f"objective {self.name}: the vector has {self.vector.numel()} values, the layer "
                f"has {shape[1]} channels"
            )
        layer, vec = self.layer, self.vector
        cache: dict[torch.device, torch.Tensor] = {}

        def value(p: Probe) -> torch.Tensor:
            a = p.activations[layer]
            v = cache.get(a.device)
            if v is None:
                v = cache[a.device] = vec.to(a.device, a.dtype)
            if a.ndim == 2:
                return a @ v
            return torch.einsum("nchw,c->n", a, v) / (a.shape[2] * a.shape[3])

        return value


class Diversity(Objective):
    """Lucid's diversity term (Olah et al. 2017, "Diversity"): each image's Gram matrix of the
    layer's channels, ``G_n = A_n A_n^T`` (A_n: C x HW), normalized to unit Frobenius norm; image
    n's value is ``-1/(m-1) sum_{k != n} <G_n, G_k>``, minus its mean cosine similarity of style
    to the other ``m - 1`` images of its group (an objective's copies). Add it with a weight:
    ``channel("L:3") + 0.5 * diversity("L")``. With one image in a group it is 0."""

    def __init__(self, layer: str) -> None:
        if not isinstance(layer, str) or not layer.strip():
            raise LayerError(f"a diversity objective needs a layer name, not {layer!r}")
        self.layer = layer.strip()

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"diversity:{self.layer}"

    def layers(self) -> list[str]:
        return [self.layer]

    def bind(self, env: Env) -> Bound:
        shape = _layer_shape(env, self.layer, self.name)
        if len(shape) != 4:
            raise LayerError(
                f"objective {self.name}: diversity needs a 4-D (N, C, H, W) layer output; "
                f"{self.layer} gives {shape}"
            )
        layer = self.layer

        def value(p: Probe) -> torch.Tensor:
            a = p.activations[layer]
            m = a.shape[0]
            if m < 2:
                return a.new_zeros(m)
            flat = a.flatten(2)
            gram = F.normalize((flat @ flat.transpose(1, 2)).flatten(1), dim=1)
            sim = gram @ gram.T
            return -(sim.sum(dim=1) - sim.diagonal()) / (m - 1)

        return value


# -- penalties on the image ---------------------------------------------------------------------
class _ImagePenalty(Objective):
    def __init__(self, name: str, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        self._name, self.fn = name, fn

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._name

    def bind(self, env: Env) -> Bound:
        fn = self.fn
        return lambda p: fn(p.image, p.center)


def l2() -> Objective:
    """``-||x - c||^2``: minus the squared L2 norm of the image's deviation from the colour ``c``
    where the model input is 0 (the preprocessing's mean), summed over pixels and channels.
    Simonyan et al. 2014 maximize ``S_c(I) - lambda ||I||_2^2`` on the mean-subtracted image:
    ``class_score(c) + lambda * l2()``."""
    from convscope.featurevis.regularizers import l2_penalty

    return _ImagePenalty("l2", lambda x, c: -l2_penalty(x, c))


def total_variation() -> Objective:
    """``-TV(x)``: minus the anisotropic total variation of the image, ``sum |x[i+1,j] - x[i,j]|
    + |x[i,j+1] - x[i,j]|`` over channels (Mahendran & Vedaldi 2015 with beta = 1)."""
    from convscope.featurevis.regularizers import total_variation as tv

    return _ImagePenalty("tv", lambda x, c: -tv(x))


class Custom(Objective):
    """A function of the :class:`Probe` (``probe -> (n,)`` values) that reads ``layers``."""

    def __init__(self, fn: Bound, layers: Sequence[str] = (), name: str = "custom") -> None:
        if not callable(fn):
            raise ConvscopeError("a custom objective needs a function probe -> (n,) values")
        self.fn, self._layers, self._name = fn, [str(x) for x in layers], name

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._name

    def layers(self) -> list[str]:
        return list(self._layers)

    def needs_output(self) -> bool:
        return True

    def bind(self, env: Env) -> Bound:
        for layer in self._layers:
            _layer_shape(env, layer, self.name)
        fn = self.fn

        def value(p: Probe) -> torch.Tensor:
            v = fn(p)
            if not isinstance(v, torch.Tensor) or v.shape != (p.image.shape[0],):
                raise ConvscopeError(
                    f"objective {self._name} must return one value per image, shape "
                    f"({p.image.shape[0]},); got {getattr(v, 'shape', type(v).__name__)}"
                )
            return v

        return value


# -- constructors and parsing -------------------------------------------------------------------
def custom(fn: Bound, layers: Sequence[str] = (), name: str = "custom") -> Objective:
    """Any function of the probe as an objective: ``custom(lambda p: p.output[:, 3] -
    p.output[:, 5])``; name the layers it reads (``p.activations[layer]``) in ``layers``."""
    return Custom(fn, layers, name)


def channel(unit: str | Unit) -> Objective:
    """The mean of channel K's map: ``channel("_blocks.10:5")``."""
    return Channel(unit)


def neuron(unit: str | Unit) -> Objective:
    """One unit: ``neuron("_blocks.10:5")`` (the centre) or ``neuron("_blocks.10:5:3:4")``."""
    return Neuron(unit)


def direction(layer: str, vector: Any) -> Objective:
    """The projection of ``layer``'s activations on ``vector`` (one value per channel)."""
    return Direction(layer, vector)


def diversity(layer: str) -> Objective:
    """Lucid's Gram-matrix diversity across an objective's copies (see :class:`Diversity`)."""
    return Diversity(layer)


def parse_objective(spec: Any) -> Objective:
    """An :class:`Objective`, a string (module docstring) or ``("direction:LAYER", vector)``."""
    if isinstance(spec, Objective):
        return spec
    if isinstance(spec, tuple):
        if len(spec) == 2 and isinstance(spec[0], str) and spec[0].startswith("direction:"):
            return Direction(spec[0].partition(":")[2], spec[1])
        raise ConvscopeError(
            f"a tuple objective is ('direction:LAYER', vector), not a {len(spec)}-tuple"
        )
    if not isinstance(spec, str):
        raise ConvscopeError(
            f"an objective is a string such as 'class:flamingo' or an Objective, not "
            f"{type(spec).__name__}"
        )
    kind, colon, rest = spec.strip().partition(":")
    kind, rest = kind.strip().lower(), rest.strip()
    if not colon or not rest or kind not in KINDS:
        raise ConvscopeError(
            f"bad objective {spec!r}: write class:NAME|INDEX, prob:NAME|INDEX, channel:LAYER:K, "
            "neuron:LAYER:K or neuron:LAYER:K:I:J"
        )
    if kind in ("class", "prob", "logprob"):
        cls: int | str = int(rest) if rest.lstrip("-").isdigit() else rest
        if isinstance(cls, int) and cls < 0:
            raise TargetError(f"bad objective {spec!r}: class indices start at 0")
        return ClassScore(cls, "logit" if kind == "class" else kind)
    if kind == "channel":
        return Channel(rest)
    if kind == "neuron":
        return Neuron(rest)
    raise ConvscopeError(
        f"objective {spec!r} needs a vector: pass ('direction:{rest}', vector) or "
        f"convscope.featurevis.direction('{rest}', vector)"
    )
