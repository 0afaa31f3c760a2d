"""PyTorch reference of each system's model and train step, for the side-by-side ratio.

Benchmark-only (`pip install -e .[bench]` brings torch); nothing in jaxtrain imports this.
Each module has the same layers, shapes and trainable-parameter count as its Flax twin in
jaxtrain/models (tests/test_torch_reference.py checks the counts). The step is what a careful
PyTorch user writes: `torch.compile` of forward + loss, bf16 autocast on GPU (fp32 on CPU, as
jaxtrain's `compute_dtype=auto`), channels_last for the conv net, fused AdamW, foreach
global-norm clipping, a warmup-cosine LambdaLR.

    python -m benchmarks.torch_reference --spec=SPEC.json --batches=BATCHES.npz

is how `python -m benchmarks.run --reference=torch` calls it (a subprocess of the same run).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------------------- layers
def pad_same_1d(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TF/Flax "SAME" padding along the last axis for a strided conv (torch's 'same' is
    stride-1 only): output length ceil(T / stride), extra pad on the right."""
    t = x.shape[-1]
    out = -(-t // stride)
    total = max((out - 1) * stride + kernel - t, 0)
    return F.pad(x, (total // 2, total - total // 2))


class SameConv1d(nn.Conv1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(pad_same_1d(x, self.kernel_size[0], self.stride[0]))


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of (B, C, T), as Flax's LayerNorm on (B, T, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def encoder(d_model: int, num_heads: int, d_ff: int, num_layers: int, dropout: float
            ) -> nn.TransformerEncoder:
    """The post-LN, exact-GELU encoder that jaxtrain/models/transformer.py mirrors."""
    layer = nn.TransformerEncoderLayer(d_model, num_heads, d_ff, dropout, activation="gelu",
                                       batch_first=True, norm_first=False)
    return nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)


# ----------------------------------------------------------------------------- models
class FireTransformer(nn.Module):
    def __init__(self, in_channels: int, seq_len: int = 60, num_areas: int = 5,
                 num_classes: int = 3, d_model: int = 128, num_heads: int = 4,
                 num_layers: int = 3, d_ff: int = 512, dropout: float = 0.1):
        super().__init__()
        self.input_proj = nn.Linear(in_channels, d_model)
        self.area_embedding = nn.Embedding(num_areas, d_model)
        self.pos_encoding = nn.Parameter(torch.randn(seq_len, d_model))
        self.encoder = encoder(d_model, num_heads, d_ff, num_layers, dropout)
        self.cls = nn.Sequential(nn.LayerNorm(d_model), nn.Dropout(dropout),
                                 nn.Linear(d_model, d_model // 2), nn.GELU(),
                                 nn.Linear(d_model // 2, num_classes))
        self.risk = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, 64), nn.ReLU(),
                                  nn.Linear(64, 1))

    def forward(self, x: torch.Tensor, area: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.input_proj(x) + self.area_embedding(area)[:, None]
        h = h + self.pos_encoding[: x.shape[1]]
        pooled = self.encoder(h).mean(dim=1)
        return self.cls(pooled), self.risk(pooled)[:, 0]


class ResidualBlock(nn.Module):
    def __init__(self, width: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.norm = ChannelLayerNorm(width)
        self.conv1 = nn.Conv1d(width, width, kernel_size, padding="same", dilation=dilation)
        self.conv2 = nn.Conv1d(width, width, kernel_size, padding="same", dilation=dilation)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.dropout(F.gelu(self.conv1(self.norm(x)))))


class DASTCN(nn.Module):
    def __init__(self, in_channels: int, num_classes: int = 3, width: int = 32,
                 stem_kernel: int = 8, stem_stride: int = 4, kernel_size: int = 3,
                 dilations: tuple[int, ...] = (1, 2, 4, 8, 16), dropout: float = 0.1):
        super().__init__()
        self.stem = SameConv1d(in_channels, width, stem_kernel, stride=stem_stride)
        self.blocks = nn.Sequential(*[ResidualBlock(width, kernel_size, d, dropout)
                                      for d in dilations])
        self.final_norm = ChannelLayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.final_norm(self.blocks(F.gelu(self.stem(x))))
        pooled = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)
        return self.head(self.dropout(pooled))


class DASBiLSTM(nn.Module):
    """cuDNN BiLSTM. torch's LSTM has two bias vectors (b_ih + b_hh) where Flax's cell has
    one; b_hh is kept at zero and frozen, which is the same function and the same trainable
    parameter count."""

    def __init__(self, in_channels: int, num_classes: int = 3, hidden: int = 32,
                 num_layers: int = 1, stem_width: int = 32,
                 stem_strides: tuple[int, ...] = (4, 2), dropout: float = 0.1):
        super().__init__()
        self.stem = nn.ModuleList()
        prev = in_channels
        for s in stem_strides:
            self.stem.append(SameConv1d(prev, stem_width, 2 * s, stride=s))
            prev = stem_width
        self.lstm = nn.LSTM(stem_width, hidden, num_layers, batch_first=True,
                            bidirectional=True, dropout=dropout if num_layers > 1 else 0.0)
        for name, p in self.lstm.named_parameters():
            if name.startswith("bias_hh"):
                nn.init.zeros_(p)
                p.requires_grad_(False)
        self.norm = nn.LayerNorm(4 * hidden)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(4 * hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for conv in self.stem:
            h = F.gelu(conv(h))
        out, (h_n, _) = self.lstm(h.transpose(1, 2))
        feats = torch.cat([h_n[-2], h_n[-1], out.mean(dim=1)], dim=1)
        return self.head(self.dropout(self.norm(feats)))


class DASTransformer(nn.Module):
    def __init__(self, in_channels: int, window: int, num_classes: int = 3,
                 patch_size: int = 32, d_model: int = 64, num_heads: int = 4,
                 num_layers: int = 2, d_ff: int = 128, dropout: float = 0.1):
        super().__init__()
        self.patch_size = patch_size
        self.patch_proj = nn.Linear(in_channels * patch_size, d_model)
        self.cls_token = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        self.pos_embedding = nn.Parameter(torch.randn(window // patch_size + 1, d_model) * 0.02)
        self.dropout = nn.Dropout(dropout)
        self.encoder = encoder(d_model, num_heads, d_ff, num_layers, dropout)
        self.cls_norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        n = t // self.patch_size
        tokens = x[:, :, : n * self.patch_size].reshape(b, c, n, self.patch_size)
        tokens = tokens.permute(0, 2, 1, 3).reshape(b, n, c * self.patch_size)
        h = self.patch_proj(tokens)
        h = torch.cat([self.cls_token.expand(b, -1, -1), h], dim=1) + self.pos_embedding
        h = self.encoder(self.dropout(h))
        return self.head(self.cls_norm(h[:, 0]))


class SEBlock(nn.Module):
    def __init__(self, channels: int, ratio: int):
        super().__init__()
        hidden = max(channels // ratio, 1)
        self.fc1, self.fc2 = nn.Linear(channels, hidden), nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * s[:, :, None, None]


def conv_block(i: int, o: int, dropout: float, se_ratio: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for cin in (i, o):
        layers += [nn.Conv2d(cin, o, 3, padding=1, bias=False), nn.BatchNorm2d(o),
                   nn.ReLU(inplace=True)]
    if se_ratio:
        layers.append(SEBlock(o, se_ratio))
    return nn.Sequential(*layers, nn.Dropout2d(dropout))


class SEUNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int = 2, base_width: int = 64,
                 dropout: float = 0.2, bottleneck_dropout: float = 0.2, se_ratio: int = 16):
        super().__init__()
        w = base_width
        self.enc = nn.ModuleList()
        prev = in_channels
        for mult in (1, 2, 4, 8):
            self.enc.append(conv_block(prev, w * mult, dropout, se_ratio))
            prev = w * mult
        self.bottleneck = conv_block(prev, w * 16, bottleneck_dropout, se_ratio)
        self.up, self.dec = nn.ModuleList(), nn.ModuleList()
        prev = w * 16
        for mult in (8, 4, 2, 1):
            self.up.append(nn.ConvTranspose2d(prev, w * mult, 2, stride=2))
            self.dec.append(conv_block(2 * w * mult, w * mult, dropout,
                                       se_ratio if mult == 8 else 0))
            prev = w * mult
        head = max(w // 2, 1)
        self.head = nn.Sequential(nn.Conv2d(w, head, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(head), nn.ReLU(inplace=True),
                                  nn.Conv2d(head, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.enc:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips), strict=True):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.head(x)


class ViolenceLSTMAttention(nn.Module):
    """The violence model (jaxtrain/tasks/violence/model.py) in PyTorch: Keras' single bias
    per LSTM gate (torch's second bias, b_hh, frozen at zero, so the trainable count and the
    arithmetic match), BatchNorm over batch and time with eps 1e-3."""

    def __init__(self, features: int, units: int = 128, layers: int = 3,
                 dense: tuple[int, ...] = (256, 128, 64), dense_batchnorm: int = 2,
                 dropout: float = 0.5, bn_momentum: float = 0.99):
        super().__init__()
        self.lstms, self.bns = nn.ModuleList(), nn.ModuleList()
        d = features
        for _ in range(layers):
            lstm = nn.LSTM(d, units, batch_first=True)
            nn.init.zeros_(lstm.bias_hh_l0)
            lstm.bias_hh_l0.requires_grad_(False)
            self.lstms.append(lstm)
            self.bns.append(nn.BatchNorm1d(units, eps=1e-3, momentum=1 - bn_momentum))
            d = units
        self.dropout = nn.Dropout(dropout)
        self.attention = nn.Linear(units, 1, bias=False)
        head: list[nn.Module] = []
        for k, width in enumerate(dense):
            head.append(nn.Linear(d, width))
            if k < dense_batchnorm:
                head.append(nn.BatchNorm1d(width, eps=1e-3, momentum=1 - bn_momentum))
            head += [nn.ReLU(), nn.Dropout(dropout)]
            d = width
        self.head = nn.Sequential(*head, nn.Linear(d, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for lstm, bn in zip(self.lstms, self.bns, strict=True):
            x, _ = lstm(x)
            x = self.dropout(bn(x.transpose(1, 2)).transpose(1, 2))
        weights = torch.softmax(self.attention(x).squeeze(-1), dim=-1)
        return self.head(torch.einsum("bt,btd->bd", weights, x))


def trainable_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------- systems
def build(spec: dict[str, Any], batch: dict[str, np.ndarray]
          ) -> tuple[nn.Module, Callable[[nn.Module, dict], torch.Tensor], bool]:
    """(model, loss(model, batch), is_conv_net) for `spec` = {"task", "model", ...}."""
    task, m = spec["task"], dict(spec["model"])
    if task == "fire":
        _, seq_len, channels = batch["x"].shape
        model = FireTransformer(channels, seq_len, spec["num_areas"], 3, m["d_model"],
                                m["num_heads"], m["num_layers"], m["d_ff"], m["dropout"])
        weights = torch.ones(3)
        risk_weight = spec.get("risk_weight", 0.5)

        def loss(model: nn.Module, b: dict) -> torch.Tensor:
            logits, risk_logit = model(b["x"], b["area"])
            ce = F.cross_entropy(logits.float(), b["label"], weight=weights.to(logits.device))
            return ce + risk_weight * F.mse_loss(torch.sigmoid(risk_logit.float()), b["risk"])

        return model, loss, False
    if task == "das":
        _, channels, window = batch["x"].shape
        name = m.pop("name")
        if name == "tcn":
            model = DASTCN(channels, 3, m["width"], m["stem_kernel"], m["stem_stride"],
                           m["kernel_size"], tuple(m["dilations"]), m["dropout"])
        elif name == "bilstm":
            model = DASBiLSTM(channels, 3, m["hidden"], m["num_layers"], m["stem_width"],
                              tuple(m["stem_strides"]), m["dropout"])
        elif name == "transformer":
            model = DASTransformer(channels, window, 3, m["patch_size"], m["d_model"],
                                   m["num_heads"], m["num_layers"], m["d_ff"], m["dropout"])
        else:
            raise ValueError(f"no PyTorch reference for DAS model {name!r}")
        weights = torch.ones(3)

        def loss(model: nn.Module, b: dict) -> torch.Tensor:
            return F.cross_entropy(model(b["x"]).float(), b["label"],
                                   weight=weights.to(b["x"].device))

        return model, loss, False
    if task == "debris":
        channels = batch["image"].shape[-1]
        model = SEUNet(channels, 2, m["base_width"], m["dropout"], m["bottleneck_dropout"],
                       m["se_ratio"])
        lc = spec["loss"]

        def loss(model: nn.Module, b: dict) -> torch.Tensor:
            logits = model(b["image"]).float()  # (B, 2, H, W)
            labels = b["mask"]
            valid = (labels >= 0).float()
            ce = F.cross_entropy(logits, labels.clamp(min=0), reduction="none")
            n = valid.sum().clamp(min=1.0)
            p_t = torch.exp(-ce)
            focal = (lc["focal_alpha"] * (1 - p_t) ** lc["focal_gamma"] * ce * valid).sum() / n
            p1 = torch.softmax(logits, dim=1)[:, 1] * valid
            t1 = (labels == 1).float()
            inter = (p1 * t1).sum()
            dice = 1 - (2 * inter + lc["dice_smooth"]) / (p1.sum() + t1.sum()
                                                         + lc["dice_smooth"])
            return (lc["dice_weight"] * dice + lc["focal_weight"] * focal
                    + lc["ce_weight"] * (ce * valid).sum() / n)

        return model, loss, True
    if task == "violence":
        _, _, features = batch["x"].shape
        model = ViolenceLSTMAttention(features, m["lstm_units"], m["lstm_layers"],
                                      tuple(m["dense"]), m["dense_batchnorm"], m["dropout"],
                                      m["bn_momentum"])
        lc = spec["loss"]
        # jaxtrain standardises the cached features inside the step: so does the twin.
        mean, std = torch.zeros(features), torch.ones(features)
        class_weights = torch.tensor([2.27, 0.64])  # the seed's values; only the cost counts

        def loss(model: nn.Module, b: dict) -> torch.Tensor:
            x = (b["x"].float() - mean.to(b["x"].device)) / std.to(b["x"].device)
            log_p = F.log_softmax(model(x).float(), dim=-1)
            s = lc["label_smoothing"]
            y = F.one_hot(b["label"], 2).float() * (1 - s) + s / 2
            per_clip = (lc["focal_alpha"] * (-torch.expm1(log_p)) ** lc["focal_gamma"]
                        * -y * log_p).sum(-1)
            return (class_weights.to(x.device)[b["label"]] * per_clip).mean()

        return model, loss, False
    if task == "glaucoma":
        return (*glaucoma_twin(m, spec["loss"]), True)
    raise ValueError(f"no PyTorch reference for task {task!r}")


def glaucoma_twin(m: dict, lc: dict
                  ) -> tuple[nn.Module, Callable[[nn.Module, dict], torch.Tensor]]:
    """torchvision's efficientnet_b0 (the same B0 architecture; symmetric padding, BN eps
    1e-5) with the glaucoma head, ImageNet input normalization inside, as jaxtrain's model
    has; binary focal loss (alpha_t, torchvision's) + L2 on the first head layer."""
    import torchvision

    d1, d2, d3 = m["dropout"]
    h1, h2 = m["hidden"]
    backbone = torchvision.models.efficientnet_b0(weights=None).features
    model = nn.Sequential(backbone, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(d1),
                          nn.Linear(1280, h1), nn.ReLU(), nn.BatchNorm1d(h1, eps=1e-3),
                          nn.Dropout(d2), nn.Linear(h1, h2), nn.ReLU(),
                          nn.BatchNorm1d(h2, eps=1e-3), nn.Dropout(d3), nn.Linear(h2, 1))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255

    def loss(model: nn.Module, b: dict) -> torch.Tensor:
        x = (b["image"].float() - mean.to(b["image"].device)) / std.to(b["image"].device)
        logits = model(x)[:, 0].float()
        focal = torchvision.ops.sigmoid_focal_loss(logits, b["label"].float(),
                                                   alpha=lc["focal_alpha"],
                                                   gamma=lc["focal_gamma"], reduction="mean")
        return focal + lc["head_l2"] * model[4].weight.pow(2).sum()

    return model, loss


def to_torch(batch: dict[str, np.ndarray], device: torch.device, channels_last: bool
             ) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in batch.items():
        t = torch.from_numpy(np.ascontiguousarray(v))
        if t.dtype in (torch.int32, torch.int16, torch.uint8, torch.int8):
            t = t.long()
        if k == "image":  # NHWC on disk -> NCHW shape; channels_last keeps NHWC memory
            t = t.permute(0, 3, 1, 2)
            t = t.contiguous(memory_format=torch.channels_last if channels_last
                             else torch.contiguous_format)
        out[k] = t.to(device)
    return out


def benchmark(spec: dict[str, Any], batches: list[dict[str, np.ndarray]], steps: int,
              warmup: int, compile_model: bool = True) -> dict[str, Any]:
    """Times the reference train step exactly as benchmarks/run.py times jaxtrain's."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, loss_fn, conv = build(spec, batches[0])
    model = model.to(device)
    if conv:
        model = model.to(memory_format=torch.channels_last)
    dev_batches = [to_torch(b, device, conv) for b in batches]
    params = [p for p in model.parameters() if p.requires_grad]
    optim = spec["optim"]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": optim["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=optim["learning_rate"], betas=(optim["b1"], optim["b2"]),
                            fused=True)
    warm, total = 100, 10_000  # the schedule benchmarks/run.py gives jaxtrain's optimizer
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: s / warm if s < warm else
        0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (s - warm) / (total - warm))))
    bf16 = device.type == "cuda"  # jaxtrain's compute_dtype=auto: bf16 on GPU, fp32 on CPU
    forward = torch.compile(loss_fn) if compile_model else loss_fn
    clip = optim["grad_clip_norm"]

    def step(b: dict) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = forward(model, b)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip, foreach=True)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    model.train()
    t0 = time.perf_counter()
    step(dev_batches[0])  # compiles forward and backward
    sync()
    compile_s = time.perf_counter() - t0
    for i in range(warmup):
        step(dev_batches[(i + 1) % len(dev_batches)])
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps):
        t = time.perf_counter()
        loss = step(dev_batches[i % len(dev_batches)])
        loss.item()  # waits for the step, as block_until_ready does in run.py
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(steps):
        loss = step(dev_batches[i % len(dev_batches)])
    loss.item()
    throughput_step = (time.perf_counter() - t) / steps
    batch_size = len(next(iter(batches[0].values())))
    median = statistics.median(times)
    return {
        "torch": torch.__version__, "device": (torch.cuda.get_device_name() if bf16 else
                                               platform.processor() or "cpu"),
        "compile": compile_model, "bf16_autocast": bf16, "channels_last": conv,
        "trainable_params": trainable_params(model), "compile_s": round(compile_s, 2),
        "step_ms_p50": round(median * 1e3, 2),
        "samples_per_s_latency": round(batch_size / median, 1),
        "samples_per_s_throughput": round(batch_size / throughput_step, 1),
        "peak_device_memory_mb": (round(torch.cuda.max_memory_allocated() / 2**20, 1)
                                  if bf16 else None),
        "nonfinite_loss": not bool(torch.isfinite(loss)),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", required=True, help="JSON: task, model, optim, ... (run.py)")
    p.add_argument("--batches", required=True, help="npz of host batches: KEY_i arrays")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--no_compile", action="store_true", help="eager mode (no torch.compile)")
    args = p.parse_args(argv)
    with open(args.spec) as f:
        spec = json.load(f)
    with np.load(args.batches) as z:
        n = 1 + max(int(k.rsplit("_", 1)[1]) for k in z.files)
        batches = [{k.rsplit("_", 1)[0]: z[k] for k in z.files if k.endswith(f"_{i}")}
                   for i in range(n)]
    print(json.dumps(benchmark(spec, batches, args.steps, args.warmup, not args.no_compile)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
