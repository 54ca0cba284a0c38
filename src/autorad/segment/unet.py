"""A small 2D U-Net (three poolings) that outlines the nodule at the centre of a click window.

Hand-written because it is 40 lines of torch and no well-kept package here provides a U-Net without pulling
torchvision or MONAI's large dependency set; the architecture is the usual one (Ronneberger et al. 2015), with
batch norm and bilinear upsampling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

DEFAULT_WIDTHS = (8, 16, 32, 48)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet2d(nn.Module):
    """(N, in_channels, H, W) -> (N, 1, H, W) logits; H and W multiples of 8."""

    def __init__(self, in_channels: int = 2, widths: Sequence[int] = DEFAULT_WIDTHS) -> None:
        super().__init__()
        w = list(widths)
        self.widths = tuple(w)
        self.down = nn.ModuleList([_block(in_channels, w[0])] + [_block(w[i], w[i + 1]) for i in range(len(w) - 1)])
        self.up = nn.ModuleList([_block(w[i + 1] + w[i], w[i]) for i in reversed(range(len(w) - 1))])
        self.head = nn.Conv2d(w[0], 1, 1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = nn.functional.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)
