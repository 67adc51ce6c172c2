"""Offline resolution of the pretrained weights the evaluation metrics need.

The development and CI machines have no internet, so nothing here ever downloads.
Each weight file is looked up in a directory (an explicit ``weights_dir`` argument,
otherwise ``$TORCH_HOME/hub/checkpoints`` -- the place ``torch.hub`` itself caches
downloads, so a machine that already ran torchvision / torch-fidelity once has them).
A missing file raises :class:`MissingWeightsError` naming the exact file, the exact
directory searched and a one-line command that fetches it on a machine with internet.

Files (the names are the ones ``torch.hub.load_state_dict_from_url`` derives from the
official URLs, so a normal download lands in the right place):

| used by | file | official URL |
|---|---|---|
| FID (torch-fidelity / torchmetrics InceptionV3) | ``weights-inception-2015-12-05-6726825d.pth`` | github.com/toshas/torch-fidelity releases v0.2.0 |
| LPIPS ``net="alex"`` backbone | ``alexnet-owt-7be5be79.pth`` | download.pytorch.org/models |
| LPIPS ``net="vgg"`` backbone | ``vgg16-397923af.pth`` | download.pytorch.org/models |
| LPIPS ``net="squeeze"`` backbone | ``squeezenet1_1-b8a52dc0.pth`` | download.pytorch.org/models |

LPIPS's calibrated linear layers ship inside the ``lpips`` package (``lpips/weights/v0.1``)
and need no download.
"""
from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from networks.checkpoints import CheckpointFormat, CheckpointMismatchError, read_checkpoint

__all__ = [
    "WeightFile",
    "MissingWeightsError",
    "INCEPTION_FID",
    "LPIPS_BACKBONES",
    "default_weights_dir",
    "require_weight_file",
    "inception_feature_extractor",
    "build_lpips",
]


@dataclass(frozen=True)
class WeightFile:
    """A pretrained weight file the project can use but never downloads.

    Attributes:
        filename: exact file name expected in the weights directory.
        url: official download URL (its basename is ``filename``).
        used_by: what needs the file (shown in error messages).
    """

    filename: str
    url: str
    used_by: str

    def fetch_command(self, weights_dir: str | os.PathLike) -> str:
        """A one-line shell command that downloads the file into ``weights_dir`` on a machine with internet."""
        return (
            f"python -c \"import torch; torch.hub.download_url_to_file('{self.url}', "
            f"'{Path(weights_dir) / self.filename}')\""
        )


#: InceptionV3 converted from the TF FID graph by torch-fidelity (used by torchmetrics' FID).
INCEPTION_FID = WeightFile(
    filename="weights-inception-2015-12-05-6726825d.pth",
    url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
    used_by="FID (torch-fidelity InceptionV3, used by torchmetrics FrechetInceptionDistance)",
)

#: torchvision ImageNet backbones of LPIPS, by the ``net`` name the ``lpips`` package uses.
LPIPS_BACKBONES: dict[str, WeightFile] = {
    "alex": WeightFile(
        "alexnet-owt-7be5be79.pth",
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        "LPIPS backbone net='alex' (torchvision AlexNet IMAGENET1K_V1)",
    ),
    "vgg": WeightFile(
        "vgg16-397923af.pth",
        "https://download.pytorch.org/models/vgg16-397923af.pth",
        "LPIPS backbone net='vgg' (torchvision VGG16 IMAGENET1K_V1)",
    ),
    "squeeze": WeightFile(
        "squeezenet1_1-b8a52dc0.pth",
        "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
        "LPIPS backbone net='squeeze' (torchvision SqueezeNet1.1 IMAGENET1K_V1)",
    ),
}


class MissingWeightsError(FileNotFoundError):
    """A pretrained weight file is not on disk; the message says which, where, and how to fetch it."""


def default_weights_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (``torch.hub.get_dir()/checkpoints``; default ``~/.cache/torch/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def require_weight_file(weight: WeightFile, weights_dir: str | os.PathLike | None = None) -> Path:
    """Return the path of ``weight`` in ``weights_dir`` (default :func:`default_weights_dir`) or raise.

    Args:
        weight: the file to find.
        weights_dir: directory to look in; ``None`` means ``$TORCH_HOME/hub/checkpoints``.

    Raises:
        MissingWeightsError: the file is absent; the message names the file, the directory
            searched, the official URL and a one-line download command.
    """
    directory = Path(weights_dir).expanduser() if weights_dir is not None else default_weights_dir()
    path = directory / weight.filename
    if path.is_file():
        return path
    where = (
        f"the configured weights_dir {str(directory)!r}"
        if weights_dir is not None
        else f"{str(directory)!r} ($TORCH_HOME/hub/checkpoints; TORCH_HOME={os.environ.get('TORCH_HOME', '<unset>')})"
    )
    raise MissingWeightsError(
        f"{weight.used_by} needs the pretrained weight file {weight.filename!r}, expected at {str(path)!r} "
        f"(looked in {where}). This machine cannot download it. On a machine with internet run\n"
        f"    {weight.fetch_command(directory)}\n"
        f"(official URL: {weight.url}) and copy the file to {str(path)!r}, or point TORCH_HOME / "
        "the weights_dir option at a directory that holds it."
    )


def inception_feature_extractor(feature: int = 2048, weights_dir: str | os.PathLike | None = None) -> nn.Module:
    """torchmetrics' FID InceptionV3 (torch-fidelity weights) loaded from a local file, never downloaded.

    The returned module can be passed as ``feature=`` to
    ``torchmetrics.image.fid.FrechetInceptionDistance``; it expects uint8 images ``(N, 3, H, W)``
    and has a ``num_features`` attribute.

    Args:
        feature: Inception feature layer, one of 64, 192, 768, 2048 (2048 = the standard FID).
        weights_dir: directory holding ``weights-inception-2015-12-05-6726825d.pth``;
            ``None`` means ``$TORCH_HOME/hub/checkpoints``.

    Raises:
        ValueError: ``feature`` is not a valid Inception layer.
        MissingWeightsError: the weight file is absent.
    """
    from torchmetrics.image.fid import NoTrainInceptionV3

    if feature not in (64, 192, 768, 2048):
        raise ValueError(f"inception_feature_extractor: feature must be one of 64, 192, 768, 2048, got {feature}")
    path = require_weight_file(INCEPTION_FID, weights_dir)
    # torch-fidelity fully unpickles (no weights-only mode) the file it is given; give it only bytes we wrote
    # ourselves from the tensors of a weights_only read (checked: tensors only, floating, finite).
    state = read_checkpoint(path, CheckpointFormat(name="FID Inception weights file", origin=INCEPTION_FID.url))
    _check_plain_weights(state, str(path))
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    buffer.seek(0)
    try:
        net = NoTrainInceptionV3(name="inception-v3-compat", features_list=[str(feature)], feature_extractor_weights_path=buffer)
    except RuntimeError as err:  # load_state_dict: keys / shapes of another network
        raise CheckpointMismatchError(
            f"{path} is not torch-fidelity's InceptionV3 weights file ({str(err).splitlines()[0][:200]}); "
            f"the official file is {INCEPTION_FID.url}"
        ) from None
    net.num_features = feature
    return net


def _check_plain_weights(state: object, source: str) -> None:
    """Raise unless ``state`` is a dict of tensors with finite floating-point weights."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointMismatchError(f"{source}: expected a state dict of tensors, got {type(state).__name__}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointMismatchError(f"{source}: NaN or Inf values in {bad[:8]}; the file is damaged, fetch it again")


_SLICE_KEY = re.compile(r"^slice\d+\.(\d+)\.(.+)$")


def _frozen_lpips_class():
    import lpips

    class FrozenLPIPS(lpips.LPIPS):
        """``lpips.LPIPS`` that stays in eval mode (no dropout in its linear layers) when a parent module
        is put in training mode, e.g. as a loss inside a LightningModule."""

        def train(self, mode: bool = True) -> "FrozenLPIPS":
            return super().train(False)

    return FrozenLPIPS


def build_lpips(
    net: str = "alex",
    pretrained_backbone: bool = True,
    weights_dir: str | os.PathLike | None = None,
) -> nn.Module:
    """The ``lpips`` package's LPIPS (v0.1) built offline, frozen: ``requires_grad=False`` and always in eval
    mode (``.train()`` is a no-op, so a training module that holds it as a loss gets no dropout).

    The calibrated linear layers always come from the ``lpips`` package (they ship with it).
    The ImageNet backbone is read from its torchvision file in ``weights_dir`` (never
    downloaded). Inputs of the returned module are images in [-1, 1]; it returns ``(N,1,1,1)``.

    Args:
        net: backbone, ``"alex"`` (the paper's / HFGI's choice), ``"vgg"`` or ``"squeeze"``.
        pretrained_backbone: ``True`` loads the ImageNet backbone (needed for any reportable
            LPIPS figure). ``False`` keeps a randomly initialised backbone: the metric still is
            0 for identical images and > 0 otherwise, which is what tests and tiny CI configs
            need, but its values are not comparable to published LPIPS.
        weights_dir: directory holding the backbone file; ``None`` means ``$TORCH_HOME/hub/checkpoints``.

    Raises:
        ValueError: unknown ``net``.
        MissingWeightsError: ``pretrained_backbone`` and the backbone file is absent.
    """
    if net not in LPIPS_BACKBONES:
        raise ValueError(f"build_lpips: net must be one of {sorted(LPIPS_BACKBONES)}, got {net!r}")
    backbone_path = require_weight_file(LPIPS_BACKBONES[net], weights_dir) if pretrained_backbone else None
    # pnet_rand=True: the lpips package builds the torchvision backbone without weights, so it
    # never reaches for the network; the ImageNet weights are loaded below from the local file.
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=` flag
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torchvision\.models\._utils")
        model = _frozen_lpips_class()(pretrained=True, net=net, version="0.1", pnet_rand=True, verbose=False)
    if backbone_path is not None:
        source = read_checkpoint(backbone_path, CheckpointFormat(name=f"LPIPS {net} backbone", origin=LPIPS_BACKBONES[net].url))
        _check_plain_weights(source, str(backbone_path))
        target = model.net.state_dict()
        renamed = {}
        for key in target:
            match = _SLICE_KEY.match(key)
            source_key = f"features.{match.group(1)}.{match.group(2)}" if match else key
            if source_key not in source:
                raise ValueError(
                    f"{str(backbone_path)!r} lacks key {source_key!r} of the torchvision {net} backbone; "
                    f"the file is not the official {LPIPS_BACKBONES[net].filename} ({LPIPS_BACKBONES[net].url})"
                )
            if source[source_key].shape != target[key].shape:
                raise ValueError(
                    f"{str(backbone_path)!r}: {source_key!r} has shape {tuple(source[source_key].shape)}, "
                    f"expected {tuple(target[key].shape)} for LPIPS net={net!r}"
                )
            renamed[key] = source[source_key]
        model.net.load_state_dict(renamed, strict=True)
    model.eval()
    model.requires_grad_(False)
    return model
