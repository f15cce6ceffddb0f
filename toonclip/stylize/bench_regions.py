"""Figures for `region=`: the GrabCut fallback's mask IoU and the extra ms per frame of a mask.

    python -m toonclip.stylize.bench_regions [n=24] [size=256] [seg=FILE.onnx] [model=MODEL]
                                             [deeplab=true] [threads=1] [runs=10]

Synthetic people (`toonclip.stylize.people.draw_person`: a face OpenCV's Haar cascade finds,
hair, neck and rounded shoulders on a textured background, with the drawn truth mask) stand in
for photos with a known person mask. Prints the IoU of the GrabCut mask against the truth
(mean, min, and how many were seeded by a detected face), how much `MaskSmoother` steadies a
jittering mask, then the extra ms per `size` px frame that `region=` costs over plain
stylising: the mask, plus the feathered composite. Mask sources timed: GrabCut,
`seg=FILE.onnx` when given, and (deeplab=true) torchvision's DeepLabV3 MobileNetV3-Large,
randomly initialised and exported to ONNX here: a real segmentation network's cost, no weights
needed (its masks are noise, so it gets no IoU). `model=` adds the model's own ms per frame.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from toonclip.stylize.people import draw_person, iou, person_shape

log = logging.getLogger(__name__)

OPTIONS = ("n", "size", "seg", "model", "deeplab", "threads", "runs")


def grabcut_iou(n: int = 24, size: int = 256, detector=None) -> dict:
    """GrabCut masks of `n` synthetic people against their truth.

    Returns {"ious": [float], "mean", "min", "seeded": frames where a face was found, "n"}.
    """
    from toonclip.stylize.faces import FaceDetector
    from toonclip.stylize.masks import GrabCutMasker

    ious, seeded = [], 0
    masker = GrabCutMasker(detector if detector is not None else FaceDetector())
    for seed in range(n):
        image, truth = draw_person(size, size, seed)
        before = masker.no_face
        ious.append(iou(masker(image), truth))
        seeded += masker.no_face == before
    return {"ious": ious, "mean": float(np.mean(ious)), "min": min(ious), "seeded": seeded, "n": n}


def jitter_flips(frames: int = 40, jitter: int = 3, size: int = 96, seed: int = 0) -> dict:
    """How much `MaskSmoother` steadies a mask whose edge jitters by +-`jitter` px per frame.

    Returns {"raw", "smoothed"}: the mean fraction of pixels whose cut (at 0.5) flips between
    consecutive frames, without and with the smoother.
    """
    from toonclip.stylize.regions import MaskSmoother

    rng, smoother = np.random.default_rng(seed), MaskSmoother()
    raw, smooth = [], []
    for _ in range(frames):  # a still person, the mask's edge jumping frame to frame
        dx, dy = rng.integers(-jitter, jitter + 1, 2)
        shape = person_shape(size, size, size / 2 + dx, size * 0.38 + dy, size * 0.12)
        mask = (shape > 0).astype(np.float32)
        raw.append(mask > 0.5)
        smooth.append(smoother(mask) > 0.5)

    def flips(masks):
        return float(np.mean([(a ^ b).mean() for a, b in zip(masks[:-1], masks[1:], strict=True)]))

    return {"raw": flips(raw), "smoothed": flips(smooth)}


def export_deeplab(path: Path) -> Path:
    """torchvision's DeepLabV3 MobileNetV3-Large (21 VOC classes), random weights, to ONNX.

    The same recipe exports the pretrained model (weights="DEFAULT") when its weights are at hand.
    """
    import warnings

    import torch
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    net = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, aux_loss=False)

    class Out(torch.nn.Module):  # the model returns a dict; ONNX wants the "out" tensor
        def __init__(self):
            super().__init__()
            self.net = net.eval()

        def forward(self, x):
            return self.net(x)["out"]

    axes = {2: "height", 3: "width"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Out(),
            (torch.rand(1, 3, 256, 256),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["image"],
            output_names=["out"],
            dynamic_axes={"image": axes, "out": axes},
        )
    return path


def extra_ms(masker, size: int = 256, runs: int = 10, feather: float = 8.0) -> dict:
    """ms per `size` px frame: {"mask": masker, "composite": feather + blend, "extra": both}."""
    from toonclip.export.bench import time_call
    from toonclip.stylize.regions import RegionStylizer

    image, truth = draw_person(size, size, 0)
    mask_ms = time_call(lambda: masker(image), 2, runs)
    # the composite with a fixed mask and an identity "model": what region= adds besides the mask
    region = RegionStylizer(lambda x: x, lambda x: truth.astype(np.float32), "person", feather)
    comp_ms = time_call(lambda: region(image), 2, runs)
    return {"mask": mask_ms, "composite": comp_ms, "extra": mask_ms + comp_ms}


def main(argv: list[str] | None = None) -> int:
    import sys

    import cv2
    import torch

    from toonclip.cli import parse_bool, parse_options
    from toonclip.export.bench import time_call
    from toonclip.stylize.faces import FaceDetector
    from toonclip.stylize.masks import GrabCutMasker, OnnxMasker

    argv = list(sys.argv[1:] if argv is None else argv)
    _, opts = parse_options(argv, "python -m toonclip.stylize.bench_regions", OPTIONS, paths=False)
    n, size = int(opts.get("n", 24)), int(opts.get("size", 256))
    threads, runs = int(opts.get("threads", 1)), int(opts.get("runs", 10))
    cv2.setNumThreads(threads)
    torch.set_num_threads(threads)
    logging.getLogger("toonclip").setLevel(logging.ERROR)  # the no-face warning is counted below

    res = grabcut_iou(n, size)
    print(
        f"GrabCut mask IoU on {n} synthetic {size} px people: mean {res['mean']:.3f}, "
        f"min {res['min']:.3f}; {res['seeded']}/{n} seeded by a detected face"
    )
    print("  per image: " + " ".join(f"{v:.2f}" for v in res["ious"]))
    flips = jitter_flips()
    print(
        f"video: a mask jittering by 3 px flips {flips['raw']:.4f} of the pixels per frame, "
        f"{flips['smoothed']:.4f} after MaskSmoother ({flips['smoothed'] / flips['raw']:.2f}x)"
    )
    print(f"extra ms per {size} px frame for region=person (threads={threads}, median of {runs}):")
    if "model" in opts:
        from toonclip.export.runtime import load_model, make_stylizer

        stylize = make_stylizer(load_model(opts["model"], threads))
        frame = draw_person(size, size, 0)[0]
        print(
            f"  {'model alone (region=all)':<32} {time_call(lambda: stylize(frame), 2, runs):7.1f}"
        )
    maskers = [("grabcut", GrabCutMasker(FaceDetector()))]
    if "seg" in opts:
        maskers.append((Path(opts["seg"]).name, OnnxMasker(opts["seg"], threads)))
    with tempfile.TemporaryDirectory() as tmp:
        if parse_bool("deeplab", opts.get("deeplab", "true")):
            path = export_deeplab(Path(tmp) / "deeplabv3_mobilenet_v3_large.onnx")
            maskers.append(("deeplabv3_mobilenet_v3 onnx", OnnxMasker(path, threads)))
        for name, masker in maskers:
            t = extra_ms(masker, size, runs)
            print(
                f"  {name:<32} {t['extra']:7.1f}  (mask {t['mask']:.1f} + feathered "
                f"composite {t['composite']:.1f})"
            )
    return 0


if __name__ == "__main__":
    import sys

    from toonclip.errors import ToonclipError

    try:
        raise SystemExit(main())
    except ToonclipError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
