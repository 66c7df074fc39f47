"""Pruning: unstructured (zeroed weights, torch.nn.utils.prune) or structured (channels removed).

Structured pruning removes whole output channels and the matching inputs of the layers that read
them (BatchNorm, the next Conv/Linear, across Flatten and residual adds) through torch_pruning's
dependency graph, so parameters, MACs and the compiled program really shrink.  The layer that
produces the model's output is never pruned (it would delete classes).  The input model is never
modified: every step works on a copy, so the same float model can still serve as the teacher.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from pytest_npu.errors import CompressionError

from ._export import example_input
from ._step import Step, choose, is_torch_module

NORMS = ("l1", "l2", "random")
SCOPES = ("layer", "global")
# Leaf modules with parameters that structured pruning knows how to shrink consistently.
_STRUCTURED_OK = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)


def _prunable(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]


def _check_structured_support(model: nn.Module) -> None:
    for name, module in model.named_modules():
        own_params = list(module.parameters(recurse=False))
        if own_params and not isinstance(module, _STRUCTURED_OK):
            raise CompressionError(
                f"prune(structured=True): layer {name!r} ({type(module).__name__}) is not supported; structured "
                "pruning handles Conv/BatchNorm/Linear chains (with Flatten, pooling and residual adds). "
                "Use prune(amount, structured=False) for this model, or exclude the layer")
        if isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.groups not in (1, module.in_channels):
            raise CompressionError(
                f"prune(structured=True): layer {name!r} is a grouped convolution (groups={module.groups}); only "
                "ordinary and depthwise convolutions can be pruned by channel. Use structured=False")


def _output_layer(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """The last Conv/Linear to run in forward(): it produces the outputs and must keep its width."""
    order: list[nn.Module] = []
    handles = [m.register_forward_hook(lambda mod, _i, _o: order.append(mod)) for _, m in _prunable(model)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    if not order:
        raise CompressionError(f"prune: {type(model).__name__} has no Conv or Linear layer to prune")
    return order[-1]


class Prune(Step):
    kind = "torch"

    def __init__(self, amount: float, structured: bool = False, norm: str = "l1", scope: str = "layer",
                 seed: int = 0, input_shape: tuple[int, ...] | None = None):
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0.0 <= float(amount) < 1.0:
            raise CompressionError(f"prune(amount={amount!r}): amount is the fraction of weights (or channels) "
                                   "to remove and must be a number in [0, 1), e.g. 0.5")
        self.amount = float(amount)
        self.structured = bool(structured)
        self.norm = choose(norm, NORMS, "prune(norm)")
        self.scope = choose(scope, SCOPES, "prune(scope)")
        self.seed = seed
        self.input_shape = input_shape

    @property
    def name(self) -> str:
        kind = "structured" if self.structured else "unstructured"
        scope = " global" if self.scope == "global" else ""
        return f"prune {self.amount:.0%} {kind} {self.norm}{scope}"

    def apply(self, model: Any) -> nn.Module:
        if not is_torch_module(model):
            raise CompressionError(f"prune: expected a torch.nn.Module, got {type(model).__name__}; prune before "
                                   "quantising (ONNX models cannot be pruned here)")
        pruned = copy.deepcopy(model).eval()
        if self.amount == 0.0:
            return pruned
        torch.manual_seed(self.seed)
        if self.structured:
            self._structured(pruned)
        else:
            self._unstructured(pruned)
        return pruned.eval()

    def _unstructured(self, model: nn.Module) -> None:
        layers = _prunable(model)
        if not layers:
            raise CompressionError(f"prune: {type(model).__name__} has no Conv or Linear layer to prune")
        method = torch_prune.RandomUnstructured if self.norm == "random" else torch_prune.L1Unstructured
        if self.scope == "global":
            torch_prune.global_unstructured([(m, "weight") for _, m in layers], pruning_method=method,
                                            amount=self.amount)
        else:
            for _, module in layers:
                method.apply(module, "weight", amount=self.amount)
        for _, module in layers:
            torch_prune.remove(module, "weight")

    def _structured(self, model: nn.Module) -> None:
        import torch_pruning as tp

        _check_structured_support(model)
        x = example_input(model, self.input_shape)
        with torch.no_grad():
            expected_shape = model(x).shape
        if self.norm == "random":
            importance = tp.importance.RandomImportance()
        else:
            importance = tp.importance.MagnitudeImportance(p=1 if self.norm == "l1" else 2)
        try:
            pruner = tp.pruner.MetaPruner(
                model, x, importance=importance, pruning_ratio=self.amount,
                global_pruning=self.scope == "global", max_pruning_ratio=0.9,
                ignored_layers=[_output_layer(model, x)])
            pruner.step()
            with torch.no_grad():
                got_shape = model(x).shape
        except CompressionError:
            raise
        except Exception as exc:
            raise CompressionError(f"prune(structured=True) failed on {type(model).__name__}: "
                                   f"{type(exc).__name__}: {exc}. Use structured=False for this model") from exc
        if got_shape != expected_shape:
            raise CompressionError(f"prune(structured=True) changed {type(model).__name__}'s output shape from "
                                   f"{tuple(expected_shape)} to {tuple(got_shape)}; use structured=False")


def prune(*args: Any, **kwargs: Any) -> Any:
    """``prune(0.5, structured=True)`` -> a step; ``prune(model, 0.5, ...)`` -> the pruned copy.

    ``amount`` in [0, 1): fraction of weights (unstructured) or of each layer's output channels
    (structured).  ``norm``: "l1" | "l2" | "random" ranking; ``scope``: "layer" (same fraction in
    every layer) or "global" (one threshold across layers).
    """
    if args and is_torch_module(args[0]):
        return Prune(*args[1:], **kwargs).apply(args[0])
    return Prune(*args, **kwargs)
