"""The two small torch models the real-export tests use (torch is imported lazily: a base
install without the [torch] extra can still collect the tests and skip them)."""

from __future__ import annotations


def build_cnn():
    import torch
    from torch import nn

    class SmallCNN(nn.Module):
        """Conv-BN-ReLU-MaxPool x2, a depthwise conv, Flatten, Linear: the layout cases that matter."""

        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(1, 8, 3, padding=1)
            self.b1 = nn.BatchNorm2d(8)
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.c2 = nn.Conv2d(8, 12, 3, padding=1)
            self.fc = nn.Linear(12 * 2 * 2, 10)

        def forward(self, x):
            x = torch.max_pool2d(torch.relu(self.b1(self.c1(x))), 2)
            x = torch.relu(self.dw(x))
            x = torch.max_pool2d(torch.relu(self.c2(x)), 2)
            return self.fc(torch.flatten(x, 1))

    torch.manual_seed(0)
    model = SmallCNN().eval()
    with torch.no_grad():     # non-trivial BatchNorm statistics so the fold is exercised
        model.b1.running_mean.uniform_(-0.5, 0.5)
        model.b1.running_var.uniform_(0.5, 2.0)
        model.b1.weight.uniform_(0.5, 1.5)
    return model


def build_mixed():
    import torch
    from torch import nn

    class Mixed(nn.Module):
        """The exporter's other idioms: HardSwish, grouped conv, gating Mul, Concat, nearest
        Upsample, AvgPool, mean over H,W (ReduceMean), LayerNorm, GELU, Softmax; two outputs."""

        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 8, 3, padding=1, stride=2)
            self.c2 = nn.Conv2d(8, 8, 3, padding=1, groups=2)
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.ln = nn.LayerNorm(16)
            self.fc = nn.Linear(16, 5)

        def forward(self, x):
            a = nn.functional.hardswish(self.c1(x))
            b = torch.sigmoid(self.c2(a)) * a
            c = torch.cat([a, nn.functional.leaky_relu(b, 0.1)], 1)
            d = nn.functional.avg_pool2d(self.up(c), 2)
            f = nn.functional.gelu(self.ln(d.mean((2, 3))))
            return torch.softmax(self.fc(f), -1), torch.tanh(d)

    torch.manual_seed(1)
    return Mixed().eval()
