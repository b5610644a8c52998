"""A convolutional decoder run over full-width bands of rows, each layer keeping the few rows of its
input that the next band still needs, so that nothing is computed twice and memory is bounded by
the band, not the image.

Square tiles with a halo recompute the halo (1.78x the arithmetic of D_a at 64-cell tiles with an
8-cell overlap) and approximate the untiled result; streamed rows compute every output once (each
layer runs again only on the 2 input rows above a band) and give the untiled result up to float
rounding.

Each stage takes the next rows of its input and returns the rows of its output that are now final;
`last` says that no input rows follow (the bottom edge's zero padding is applied then).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ResBlock


class Stage(Protocol):
    def push(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        """The next rows of the input -> the output rows that no later input row can change."""


def _rows(like: torch.Tensor, channels: int, rows: int, width: int) -> torch.Tensor:
    """Zeros (N, channels, rows, width) like `like`, channels_last: the layout every stream keeps
    (oneDNN's fast one on the CPU); a tensor of a few rows (or none) has no layout of its own."""
    return like.new_zeros((like.shape[0], channels, rows, width)).contiguous(memory_format=torch.channels_last)


def _cat_rows(parts: list[torch.Tensor]) -> torch.Tensor:
    nonempty = [p for p in parts if p.shape[2]]
    if len(nonempty) == 1:
        return nonempty[0]
    return torch.cat([p.contiguous(memory_format=torch.channels_last) for p in nonempty or parts[-1:]], dim=2)


class Pointwise:
    """A layer that maps each pixel alone (GDN, an activation): rows in, the same rows out."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.fn = fn

    def push(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        return self.fn(x) if x.shape[2] else x


def _window_rows(pending: torch.Tensor | None, x: torch.Tensor, last: bool, *, pad: int) -> torch.Tensor:
    """The rows a streamed layer runs on: those kept from the band before (or `pad` zero rows above the
    image), the band `x`, and `pad` zero rows below the image after the last band."""
    _, c, _, w = x.shape
    parts = [pending if pending is not None else _rows(x, c, pad, w), x]
    if last:
        parts.append(_rows(x, c, pad, w))
    return _cat_rows(parts)


class RowWindow:
    """A layer whose output rows each read a window of 3 input rows: centred (a 3x3 convolution) or,
    upsampling 2x, input rows i - 1 ... i + 1 for output rows 2i and 2i + 1 (the decoder's 5x5
    stride-2 transposed convolution, or its sub-pixel form). Each output row waits for the input row
    below it, which the next band brings (or the zero padding below the image, at the last band):
    the last 2 input rows are kept and run again with the next band, and `layer`'s first and last
    `trim` output rows, which lack a neighbour in its input, are not emitted."""

    def __init__(self, layer: Callable[[torch.Tensor], torch.Tensor], out_channels: int, scale: int,
                 trim: int) -> None:
        self.layer, self.out_channels, self.scale, self.trim = layer, out_channels, scale, trim
        self.pending: torch.Tensor | None = None  # the last 2 input rows seen (a zero row above the image)

    def push(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        w = x.shape[3]
        buf = _window_rows(self.pending, x, last, pad=1)
        if buf.shape[2] < 3:
            self.pending = buf
            return _rows(x, self.out_channels, 0, w * self.scale)
        self.pending = buf[:, :, buf.shape[2] - 2:]
        out = self.layer(buf)
        return out[:, :, self.trim:out.shape[2] - self.trim] if self.trim else out


def conv_window(conv: nn.Conv2d) -> RowWindow:
    """A 3x3 stride-1 convolution with padding 1, streamed (its vertical padding comes with the rows)."""
    if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.padding != (1, 1) or conv.groups != 1:
        raise ValueError(f"cannot stream {conv}")
    return RowWindow(lambda t: F.conv2d(t, conv.weight, conv.bias, padding=(0, 1)), conv.out_channels, 1, 0)


def upsampling_window(conv: nn.ConvTranspose2d) -> RowWindow:
    """The decoder's 2x upsampling (as it runs, sub-pixel or not), streamed: its output rows 0, 1 and
    the last 2 lack a neighbour in the window. (With this padding, rather than none, oneDNN runs the
    transposed convolution twice as fast.)"""
    if (conv.kernel_size, conv.stride, conv.padding, conv.output_padding) != ((5, 5), (2, 2), (2, 2), (1, 1)):
        raise ValueError(f"cannot stream {conv}")
    return RowWindow(conv, conv.out_channels, 2, 2)


class RowDownsampling:
    """A 5x5 stride-2 convolution with padding 2 (E's downsamplings), streamed: output row o reads input
    rows 2o - 2 ... 2o + 2. The convolution runs as the module runs (padded) on the rows from the next
    output's window on, and the first and last output rows of each run, whose windows reach past the
    rows given, are dropped (2 zero rows stand for the padding above and below the image)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        if (conv.kernel_size, conv.stride, conv.padding) != ((5, 5), (2, 2), (2, 2)) or conv.groups != 1:
            raise ValueError(f"cannot stream {conv}")
        self.conv = conv
        self.pending: torch.Tensor | None = None  # input rows from the next output's window on

    def push(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        w = x.shape[3]
        buf = _window_rows(self.pending, x, last, pad=2)
        complete = (buf.shape[2] - 3) // 2  # outputs 1 ... complete of the run have their window in buf
        if complete < 1:
            self.pending = buf
            return _rows(x, self.conv.out_channels, 0, (w + 1) // 2)
        self.pending = buf[:, :, 2 * complete:]
        return self.conv(buf)[:, :, 1:complete + 1]


class RowResBlock:
    """x + conv2(silu(conv1(silu(x)))): the sum waits for the residual branch, two rows behind."""

    def __init__(self, block: ResBlock) -> None:
        self.branch = [Pointwise(F.silu), conv_window(block.conv1), Pointwise(F.silu), conv_window(block.conv2)]
        self.skip: torch.Tensor | None = None  # input rows whose sum is not made yet

    def push(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        self.skip = x if self.skip is None else _cat_rows([self.skip, x])
        h = run(self.branch, x, last)
        n = h.shape[2]
        out = h.add_(self.skip[:, :, :n])
        self.skip = self.skip[:, :, n:]
        return out


def stages(layers: Iterable[nn.Module]) -> list[Stage]:
    """The streamed form of a chain of layers: 3x3 convolutions, the 5x5 stride-2 transposed ones
    (sub-pixel or not), residual blocks, and layers that map each pixel alone (GDN, activations)."""
    out: list[Stage] = []
    for layer in layers:
        if isinstance(layer, nn.Sequential):
            out += stages(layer)
        elif isinstance(layer, ResBlock):
            out.append(RowResBlock(layer))
        elif isinstance(layer, nn.ConvTranspose2d):
            out.append(upsampling_window(layer))
        elif isinstance(layer, nn.Conv2d):
            out.append(RowDownsampling(layer) if layer.stride == (2, 2) else conv_window(layer))
        else:
            out.append(Pointwise(layer))
    return out


def run(chain: list[Stage], x: torch.Tensor, last: bool) -> torch.Tensor:
    for stage in chain:
        x = stage.push(x, last)
    return x


def stream(chain: list[Stage], x: torch.Tensor, band: int) -> Iterator[torch.Tensor]:
    """x (N, C, H, W) through `chain` in bands of `band` rows: the output's rows in order, in parts."""
    h = x.shape[2]
    for top in range(0, h, band):
        yield run(chain, x[:, :, top:top + band], last=top + band >= h)
