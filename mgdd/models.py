"""Evaluation networks, created by name (timm-style registry).

``convnet`` is the DD community's ConvNet-3 (DC/DSA/DM): [conv3x3 -> norm -> ReLU ->
avgpool2] x depth, width 128, instance norm (GroupNorm with one group per channel);
28x28 inputs get padding 3 in the first conv so maps go 32 -> 16 -> 8 -> 4.
The others are for cross-architecture checks.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import UsageError, unknown_name


def make_norm(norm: str, width: int) -> nn.Module:
    if norm == "instancenorm":
        return nn.GroupNorm(width, width, affine=True)
    if norm == "batchnorm":
        return nn.BatchNorm2d(width)
    if norm == "none":
        return nn.Identity()
    raise unknown_name("norm", norm, ["instancenorm", "batchnorm", "none"])


class ConvNet(nn.Module):
    def __init__(self, channels: int, num_classes: int, image_size=(28, 28), width: int = 128,
                 depth: int = 3, norm: str = "instancenorm", pad28: bool = True):
        super().__init__()
        h, w = image_size
        layers, c = [], channels
        for d in range(depth):
            pad = 3 if d == 0 and (h, w) == (28, 28) and pad28 else 1  # pad28=False: 28 -> 14 -> 7 -> 3
            layers += [nn.Conv2d(c, width, 3, padding=pad), make_norm(norm, width), nn.ReLU(inplace=True)]
            h, w = h + 2 * pad - 2, w + 2 * pad - 2
            if h < 2 or w < 2:
                raise UsageError(f"ConvNet depth {depth} is too deep for {image_size} images; lower the depth.")
            layers.append(nn.AvgPool2d(2))
            h, w, c = h // 2, w // 2, width
        self.features = nn.Sequential(*layers)
        self.map_size = (h, w)  # the last feature map's side
        self.feature_dim = width * h * w
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class MLP(nn.Module):
    def __init__(self, channels, num_classes, image_size=(28, 28), width=128):
        super().__init__()
        d = channels * image_size[0] * image_size[1]
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(d, width), nn.ReLU(inplace=True),
                                 nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, num_classes))

    def forward(self, x):
        return self.net(x)


class LeNet(nn.Module):
    def __init__(self, channels, num_classes, image_size=(28, 28)):
        super().__init__()
        pad = 2 if tuple(image_size) == (28, 28) else 0
        self.features = nn.Sequential(nn.Conv2d(channels, 6, 5, padding=pad), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                                      nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        with torch.no_grad():
            d = self.features(torch.zeros(1, channels, *image_size)).numel()
        self.classifier = nn.Sequential(nn.Linear(d, 120), nn.ReLU(inplace=True), nn.Linear(120, 84),
                                        nn.ReLU(inplace=True), nn.Linear(84, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class AlexNet(nn.Module):
    """A small AlexNet-like net as used in DD cross-architecture tables."""

    def __init__(self, channels, num_classes, image_size=(28, 28)):
        super().__init__()
        pad = 4 if tuple(image_size) == (28, 28) else 2
        self.features = nn.Sequential(
            nn.Conv2d(channels, 128, 5, padding=pad), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(128, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(192, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 192, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(192, 192, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        with torch.no_grad():
            d = self.features(torch.zeros(1, channels, *image_size)).numel()
        self.classifier = nn.Linear(d, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride, norm):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.n1 = make_norm(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.n2 = make_norm(norm, cout)
        self.short = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), make_norm(norm, cout))

    def forward(self, x):
        out = F.relu(self.n1(self.conv1(x)))
        return F.relu(self.n2(self.conv2(out)) + self.short(x))


class ResNet18(nn.Module):
    """ResNet-18 for small images (3x3 stem, no max-pool), instance norm as in DD code."""

    def __init__(self, channels, num_classes, image_size=(28, 28), norm="instancenorm"):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, 64, 3, 1, 1, bias=False), make_norm(norm, 64), nn.ReLU(inplace=True))
        blocks, c = [], 64
        for width, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            blocks += [BasicBlock(c, width, stride, norm), BasicBlock(width, width, 1, norm)]
            c = width
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


MODELS = {
    "convnet": ConvNet,
    "convnet-bn": lambda c, n, s: ConvNet(c, n, s, norm="batchnorm"),
    "convnet-nonorm": lambda c, n, s: ConvNet(c, n, s, norm="none"),
    "mlp": MLP,
    "lenet": LeNet,
    "alexnet": AlexNet,
    "resnet18": ResNet18,
}


def create_model(name: str, channels: int, num_classes: int, image_size=(28, 28)) -> nn.Module:
    if name not in MODELS:
        raise unknown_name("model", name, MODELS)
    try:
        return MODELS[name](channels, num_classes, tuple(image_size))
    except RuntimeError as e:  # a layer's output would be empty: the images are too small for it
        h, w = image_size
        first = str(e).strip().splitlines()[0][:160]
        raise UsageError(f"model {name!r} does not fit {channels}x{h}x{w} images ({first}); "
                         "use convnet or mlp for images this small.") from None
