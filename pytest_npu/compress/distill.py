"""Knowledge distillation: train the current model (the student) to match a teacher.

Loss = alpha * KL(softmax(teacher/T) || softmax(student/T)) * T^2 + (1 - alpha) * CE(student, labels),
the usual Hinton et al. recipe; the T^2 keeps the soft-target gradients on the same scale as the
hard-label ones.  The teacher's logits are computed once (the data is not augmented), so the teacher
may be a torch module or an ONNX model run by onnxruntime.  Seeded: same inputs, same student.

Training runs in float64 by default and the student is rounded back to float32 at the end: float32
training follows the last-bit differences of each CPU's kernels (the quickstart's pruned digits
model ended at 98.1, 97.8 and 97.5 % top-1 under AVX-512, AVX2 and scalar ATen kernels), float64
training rounded to float32 gave the same top-1 under all three, and on these small models it is
faster (0.30 s against 1.29 s for 6 epochs of the pruned digits CNN, oneDNN's float32 path being
slow at these sizes).
"""

from __future__ import annotations

import copy
import sys
import time
from typing import Any, TextIO

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pytest_npu.errors import CompressionError

from ._data import samples
from ._export import single_thread
from ._stats import as_model_proto, run_onnx
from ._step import Step, is_torch_module


class ProgressBar:
    """A one-line stderr bar (no tqdm dependency).

    On a terminal it redraws in place at most 10 times a second; into a file or a captured stream it
    writes one line per ``milestone`` (e.g. per epoch) so logs stay short.
    """

    def __init__(self, total: int, label: str, stream: TextIO | None = None, width: int = 24):
        self.total, self.label, self.width = max(total, 1), label, width
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = self.last_draw = time.perf_counter()

    def update(self, done: int, note: str = "", milestone: bool = False) -> None:
        now = time.perf_counter()
        finished = done >= self.total
        if self.interactive and not finished and now - self.last_draw < 0.1:
            return
        if not self.interactive and not (milestone or finished):
            return
        self.last_draw = now
        filled = int(self.width * min(done, self.total) / self.total)
        line = f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} {note} {now - self.start:.1f}s"
        self.stream.write(f"\r{line}" if self.interactive else f"{line}\n")
        if finished and self.interactive:
            self.stream.write("\n")
        self.stream.flush()


DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _teacher_logits(teacher: Any, x: np.ndarray, dtype: torch.dtype = torch.float32) -> np.ndarray:
    if is_torch_module(teacher):
        teacher = copy.deepcopy(teacher).to(dtype).eval()
        with torch.no_grad():
            return np.concatenate([teacher(torch.from_numpy(x[i:i + 256]).to(dtype)).numpy()
                                   for i in range(0, len(x), 256)])
    return run_onnx(as_model_proto(teacher, "distill(teacher)"), x)


class Distill(Step):
    kind = "torch"

    def __init__(self, teacher: Any, data: Any, epochs: int = 6, temperature: float = 4.0, alpha: float = 0.7,
                 lr: float = 5e-3, batch_size: int = 32, seed: int = 0, progress: bool = True,
                 dtype: str = "float64"):
        if teacher is None:
            raise CompressionError("distill(teacher=None): pass the float model (torch module or ONNX) to learn from")
        if not isinstance(epochs, int) or epochs < 1:
            raise CompressionError(f"distill(epochs={epochs!r}): need a positive whole number of epochs")
        if not temperature > 0:
            raise CompressionError(f"distill(temperature={temperature!r}): the temperature must be > 0 (e.g. 4.0)")
        if not 0.0 <= alpha <= 1.0:
            raise CompressionError(f"distill(alpha={alpha!r}): alpha weighs soft against hard targets, in [0, 1]")
        if not lr > 0:
            raise CompressionError(f"distill(lr={lr!r}): the learning rate must be > 0")
        if dtype not in DTYPES:
            raise CompressionError(f"distill(dtype={dtype!r}): train in 'float64' (the same student on every "
                                   f"CPU) or 'float32'")
        self.x, self.y = samples(data, "distill(data)")
        if self.y is None and alpha < 1.0:
            raise CompressionError("distill(data) has no labels, so the hard-label loss cannot be computed: pass "
                                   "(x, y) or set alpha=1.0 (soft targets only)")
        self.teacher = teacher
        self.epochs, self.temperature, self.alpha, self.lr = epochs, float(temperature), float(alpha), float(lr)
        self.batch_size, self.seed, self.progress = batch_size, seed, progress
        self.dtype = DTYPES[dtype]
        self.losses: list[float] = []          # mean loss per epoch of the last apply()

    @property
    def sample_shape(self) -> tuple[int, ...] | None:
        return tuple(self.x.shape[1:])

    @property
    def name(self) -> str:
        return f"distill {self.epochs} ep T={self.temperature:g} a={self.alpha:g}"

    def apply(self, model: Any) -> nn.Module:
        if not is_torch_module(model):
            raise CompressionError(f"distill: the student must be a torch.nn.Module, got {type(model).__name__}; "
                                   "distil before quantising")
        teacher_logits = torch.from_numpy(_teacher_logits(self.teacher, self.x, self.dtype)).to(self.dtype)
        original = next((p.dtype for p in model.parameters()), torch.float32)
        student = copy.deepcopy(model).to(self.dtype)
        with torch.no_grad():
            width = student(torch.from_numpy(self.x[:2]).to(self.dtype)).shape[1:]
        if width != teacher_logits.shape[1:]:
            raise CompressionError(f"distill: student outputs {tuple(width)} per sample but the teacher outputs "
                                   f"{tuple(teacher_logits.shape[1:])}; they must predict the same classes")
        with single_thread():
            self._fit(student, teacher_logits)
        return student.to(original).eval()

    def _fit(self, student: nn.Module, teacher_logits: torch.Tensor) -> None:
        torch.manual_seed(self.seed)
        x, y = torch.from_numpy(self.x).to(self.dtype), None if self.y is None else torch.from_numpy(self.y)
        optimiser = torch.optim.Adam(student.parameters(), lr=self.lr)
        steps = -(-len(x) // self.batch_size)
        bar = ProgressBar(self.epochs * steps, "distill") if self.progress else None
        t = self.temperature
        self.losses = []
        for epoch in range(self.epochs):
            student.train()
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed * 1000 + epoch))
            total = 0.0
            for step, start in enumerate(range(0, len(x), self.batch_size)):
                idx = order[start:start + self.batch_size]
                logits = student(x[idx])
                soft = F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(teacher_logits[idx] / t, dim=1),
                                reduction="batchmean", log_target=True) * t * t
                loss = self.alpha * soft
                if y is not None and self.alpha < 1.0:
                    loss = loss + (1.0 - self.alpha) * F.cross_entropy(logits, y[idx])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(idx)
                if bar is not None:
                    bar.update(epoch * steps + step + 1, f"epoch {epoch + 1}/{self.epochs} loss {float(loss.detach()):.4f}",
                               milestone=step == steps - 1)
            self.losses.append(total / len(x))


def distill(teacher: Any, data: Any, epochs: int = 6, temperature: float = 4.0, alpha: float = 0.7,
            lr: float = 5e-3, batch_size: int = 32, seed: int = 0, progress: bool = True,
            dtype: str = "float64") -> Distill:
    """A step training the model it is applied to against ``teacher`` on ``data`` ((x, y) or x).

    ``dtype="float64"`` (the default) trains in double precision so every CPU gets the same student;
    ``"float32"`` is the usual torch precision, faster on large models, CPU-dependent in the last bits.
    """
    return Distill(teacher, data, epochs=epochs, temperature=temperature, alpha=alpha, lr=lr,
                   batch_size=batch_size, seed=seed, progress=progress, dtype=dtype)
