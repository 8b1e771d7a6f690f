"""CIFAR-10 classifiers of the Weight Recycle paper's table (004): LeNet5 and ResNet18.

Both build every convolution through :func:`~lightning_sr.networks.conv.make_conv`, so ``model.conv=recycle``
recycles them like in the SR networks: with ``conv_scope=all`` (their config's default) every convolution but the
first (the stem; the last layer is the linear classifier); with ``residual`` only the 3x3 convolutions inside
ResNet18's basic blocks (LeNet5 has none: a one-line error). 1x1 convolutions (ResNet18's projection shortcuts)
are never recycled: a rotated 1x1 filter is itself.

* ``lenet5``: conv 5x5 3->6, ReLU, max-pool 2, conv 5x5 6->16, ReLU, max-pool 2, FC 400-120-84-``num_classes``
  (valid padding, 32x32 input; the classic LeNet-5 on CIFAR).
* ``resnet18``: the CIFAR variant (He et al. 2016 as commonly trained on CIFAR: 3x3 stem, no max-pool, basic
  blocks [2, 2, 2, 2] of 64/128/256/512 channels, strides 1/2/2/2, batch norm, global average pool, FC);
  11.17M parameters for 10 classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_sr.errors import require
from lightning_sr.networks.conv import conv_kwargs, make_conv
from lightning_sr.networks.recycle import check_scope, conv_choice
from lightning_sr.networks.registry import register

CLASSIFY_KEYS = ("num_classes", "conv", "conv_scope", "recycle")


def _check_classes(num_classes: int) -> None:
    require(isinstance(num_classes, int) and num_classes >= 2,
            f"model.num_classes={num_classes} is impossible; use the number of classes of the data (CIFAR-10: 10)")


@register("lenet5", keys=CLASSIFY_KEYS)
class LeNet5(nn.Module):
    in_channels = 3

    def __init__(self, num_classes: int = 10, conv: str = "normal", conv_scope: str = "all",
                 recycle: dict | None = None):
        super().__init__()
        _check_classes(num_classes)
        choice = conv_choice(conv, recycle)
        inner = choice if check_scope(conv_scope) == "all" else {"kind": "normal"}
        self.conv1 = make_conv(3, 6, 5, padding=0)  # the first layer: never recycled (6 outputs, too)
        self.conv2 = make_conv(6, 16, 5, padding=0, **inner)
        self.fc1, self.fc2, self.fc3 = nn.Linear(16 * 5 * 5, 120), nn.Linear(120, 84), nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, conv: dict):
        super().__init__()
        self.conv1 = make_conv(cin, cout, 3, stride=stride, bias=False, **conv)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = make_conv(cout, cout, 3, bias=False, **conv)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:  # 1x1 projection: always an ordinary convolution
            self.shortcut = nn.Sequential(make_conv(cin, cout, 1, stride=stride, padding=0, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


@register("resnet18", keys=CLASSIFY_KEYS)
class ResNet18(nn.Module):
    in_channels = 3
    widths = (64, 128, 256, 512)

    def __init__(self, num_classes: int = 10, conv: str = "normal", conv_scope: str = "all",
                 recycle: dict | None = None):
        super().__init__()
        _check_classes(num_classes)
        block_conv = conv_kwargs(conv_choice(conv, recycle))
        check_scope(conv_scope)  # all and residual agree here: every 3x3 conv but the stem is in a block
        self.stem = nn.Sequential(make_conv(3, 64, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        layers, cin = [], 64
        for i, (w, stride) in enumerate(zip(self.widths, (1, 2, 2, 2), strict=True)):
            blocks = [BasicBlock(cin, w, stride, block_conv), BasicBlock(w, w, 1, block_conv)]
            cin = w
            layers.append((f"layer{i + 1}", nn.Sequential(*blocks)))
        for name, layer in layers:
            self.add_module(name, layer)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem(x)
        for i in range(len(self.widths)):
            out = getattr(self, f"layer{i + 1}")(out)
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))
