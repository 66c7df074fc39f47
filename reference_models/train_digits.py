"""Train the digits CNN deterministically and write the shipped artifacts.

    python -m reference_models.train_digits [--epochs 8] [--out reference_models/artifacts]

Seeded (weights, shuffling), single-process CPU: two runs give the same weights and accuracy.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from . import digits_cnn


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
    return float((pred == y).mean())


def train(epochs: int = 8, seed: int = 0, lr: float = 3e-3, batch_size: int = 64):
    """Return the trained model (eval mode): Adam, cross-entropy, per-epoch seeded shuffling."""
    import torch
    from torch import nn

    from pytest_npu.compress._export import single_thread

    torch.manual_seed(seed)
    model = digits_cnn.build()
    x, y = digits_cnn.train_data()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    with single_thread():
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(xt), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
            for start in range(0, len(xt), batch_size):
                idx = order[start:start + batch_size]
                opt.zero_grad()
                loss_fn(model(xt[idx]), yt[idx]).backward()
                opt.step()
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=digits_cnn.ARTIFACTS)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    model = train(args.epochs, args.seed)
    seconds = time.perf_counter() - start
    x_test, y_test = digits_cnn.test_data()
    acc = accuracy(model, x_test, y_test)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out / "digits_cnn.pt")
    digits_cnn.export_onnx(model, args.out / "digits_cnn.onnx")
    print(f"trained {args.epochs} epochs in {seconds:.2f} s; held-out top-1 {acc * 100:.2f} % "
          f"({len(y_test)} images); wrote {args.out}/digits_cnn.pt and digits_cnn.onnx")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
