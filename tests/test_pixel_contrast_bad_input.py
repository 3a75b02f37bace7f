"""Bad input to every public function of medtut.pixel_contrast and medtut.data.textures: each case must
raise a ValueError whose message names the argument (and, where it applies, what was expected and what
arrived). One parametrised case per (function, defect)."""
import numpy as np
import pytest
import torch

from medtut import pixel_contrast as pc
from medtut.data import textures as tx

_G = torch.Generator().manual_seed(0)
EMB = torch.randn(2, 4, 8, 8, generator=_G)
LAB = torch.randint(0, 3, (2, 8, 8), generator=_G)
PRED = torch.randint(0, 3, (2, 8, 8), generator=_G)
Z = pc.l2_normalize(torch.randn(6, 4, generator=_G), 1)
Y = torch.tensor([0, 0, 1, 1, 2, 2])
IMAGES = torch.randn(3, 16, 16, generator=_G)
LABELS = torch.randint(0, 3, (3, 16, 16), generator=_G)
MODEL = pc.make_model(3, embed_dim=4, features=(4, 8), seed=0, device="cpu")
MEMORY = pc.PixelSegmentMemory(3, 4, 10, 5)
RNG = lambda: np.random.default_rng(0)   # noqa: E731


def _nan_images():
    x = IMAGES.clone()
    x[0, 0, 0] = float("nan")
    return x


CASES = {
    # l2_normalize / resize_labels
    "l2_normalize x int": (lambda: pc.l2_normalize(torch.ones(3, 2, dtype=torch.long)), "x must be a float tensor"),
    "l2_normalize dim out of range": (lambda: pc.l2_normalize(Z, 2), r"dim must be an int in \[-2, 1\]"),
    "resize_labels float": (lambda: pc.resize_labels(LAB.float(), (4, 4)), r"labels must be an integer \(B, H, W\)"),
    "resize_labels size": (lambda: pc.resize_labels(LAB, (4,)), r"size must be \(h, w\), two positive ints"),
    "resize_labels size zero": (lambda: pc.resize_labels(LAB, (0, 4)), "size must be"),
    # make_model
    "make_model num_classes": (lambda: pc.make_model(1), "num_classes must be an int >= 2; got 1"),
    "make_model embed_dim": (lambda: pc.make_model(3, embed_dim=0), "embed_dim must be a positive int; got 0"),
    "make_model features": (lambda: pc.make_model(3, features=(16,)), "features must be a tuple of >= 2 positive ints"),
    "make_model in_channels": (lambda: pc.make_model(3, in_channels=0), "in_channels must be an int >= 1; got 0"),
    "make_model seed": (lambda: pc.make_model(3, seed=-1), "seed must be an int >= 0; got -1"),
    "make_model device": (lambda: pc.make_model(3, device="gpu"), "gpu"),
    # sample_anchors
    "sample_anchors labels 4-d": (lambda: pc.sample_anchors(LAB[None], PRED), r"labels must be an integer \(B, h, w\)"),
    "sample_anchors labels float": (lambda: pc.sample_anchors(LAB.float(), PRED), "labels must be an integer"),
    "sample_anchors negative label": (lambda: pc.sample_anchors(LAB - 3, PRED), "class indices >= 0 or ignore_index"),
    "sample_anchors no predictions": (lambda: pc.sample_anchors(LAB, None), "predictions is needed"),
    "sample_anchors predictions shape": (lambda: pc.sample_anchors(LAB, PRED[:, :4]), "predictions must have the labels' shape"),
    "sample_anchors max_samples": (lambda: pc.sample_anchors(LAB, PRED, 0), "max_samples must be a positive int"),
    "sample_anchors max_views": (lambda: pc.sample_anchors(LAB, PRED, 64, -1), "max_views must be an int >= 0"),
    "sample_anchors anchor_sampling": (lambda: pc.sample_anchors(LAB, PRED, anchor_sampling="hard"), "anchor_sampling must be one of"),
    "sample_anchors generator": (lambda: pc.sample_anchors(LAB, PRED, generator=0), "generator must be a torch.Generator"),
    "sample_anchors ignore_index": (lambda: pc.sample_anchors(LAB, PRED, ignore_index=0.5), "ignore_index must be an int"),
    # contrast_terms
    "contrast_terms z_anchor 1-d": (lambda: pc.contrast_terms(Z[0], Y, Z, Y), r"z_anchor must be a float \(rows, D\)"),
    "contrast_terms D mismatch": (lambda: pc.contrast_terms(Z, Y, Z[:, :2], Y, exclude_self=False), "the same D; got 4 and 2"),
    "contrast_terms y float": (lambda: pc.contrast_terms(Z, Y.float(), Z, Y), r"y_anchor must be an integer \(6,\)"),
    "contrast_terms y length": (lambda: pc.contrast_terms(Z, Y, Z, Y[:3]), r"y_contrast must be an integer \(6,\)"),
    "contrast_terms temperature": (lambda: pc.contrast_terms(Z, Y, Z, Y, temperature=0.0), "temperature must be a positive number"),
    "contrast_terms exclude_self M != N": (lambda: pc.contrast_terms(Z, Y, Z[:3], Y[:3]), "exclude_self=True needs"),
    # pixel_contrast_loss
    "loss embeddings 3-d": (lambda: pc.pixel_contrast_loss(EMB[0], LAB, PRED), r"embeddings must be a float \(B, D, h, w\)"),
    "loss embeddings int": (lambda: pc.pixel_contrast_loss(EMB.long(), LAB, PRED), "embeddings must be a float"),
    "loss embeddings NaN": (lambda: pc.pixel_contrast_loss(EMB * float("nan"), LAB, PRED), "embeddings must be finite"),
    "loss labels batch": (lambda: pc.pixel_contrast_loss(EMB, LAB[:1], PRED), "labels must hold B = 2"),
    "loss predictions float": (lambda: pc.pixel_contrast_loss(EMB, LAB, PRED.float()), "predictions must be an integer"),
    "loss predictions missing": (lambda: pc.pixel_contrast_loss(EMB, LAB, None), "predictions .* are needed"),
    "loss base_temperature": (lambda: pc.pixel_contrast_loss(EMB, LAB, PRED, 0.1, -1.0), "base_temperature must be a positive"),
    "loss temperature NaN": (lambda: pc.pixel_contrast_loss(EMB, LAB, PRED, float("nan")), "temperature must be a positive"),
    "loss generator": (lambda: pc.pixel_contrast_loss(EMB, LAB, PRED, generator=np.random.default_rng(0)), "generator must be"),
    # PixelSegmentMemory
    "memory num_classes": (lambda: pc.PixelSegmentMemory(1, 4, 10, 5), "num_classes must be an int >= 2; got 1"),
    "memory dim": (lambda: pc.PixelSegmentMemory(3, 0, 10, 5), "dim must be an int >= 1; got 0"),
    "memory empty queues": (lambda: pc.PixelSegmentMemory(3, 4, 0, 0), r"pixel_size \+ segment_size must be >= 1"),
    "memory pixels_per_image": (lambda: pc.PixelSegmentMemory(3, 4, 10, 5, pixels_per_image=0), "pixels_per_image must be an int >= 1"),
    "enqueue dim": (lambda: MEMORY.enqueue(EMB[:, :2], LAB), "embeddings must have dim = 4 channels; got 2"),
    "enqueue label range": (lambda: MEMORY.enqueue(EMB, LAB + 3), r"labels must lie in \[0, 2\]"),
    "enqueue generator": (lambda: MEMORY.enqueue(EMB, LAB, generator=1), "generator must be a torch.Generator"),
    "memory loss memory": (lambda: pc.memory_contrast_loss(EMB, LAB, PRED, "queue"), "memory must be a PixelSegmentMemory"),
    "memory loss dim": (lambda: pc.memory_contrast_loss(EMB[:, :2], LAB, PRED, MEMORY), "the memory's dim = 4 channels; got 2"),
    # Config
    "Config arm": (lambda: pc.Config(arm="supcon"), "arm must be one of"),
    "Config num_steps": (lambda: pc.Config(num_steps=0), "num_steps must be a positive int; got 0"),
    "Config batch_size float": (lambda: pc.Config(batch_size=8.0), "batch_size must be a positive int; got 8.0"),
    "Config lr": (lambda: pc.Config(lr=0.0), "lr must be a finite number > 0; got 0.0"),
    "Config lam": (lambda: pc.Config(lam=-0.1), "lam must be a finite number >= 0"),
    "Config warmup_frac": (lambda: pc.Config(warmup_frac=1.0), r"warmup_frac must lie in \[0, 1\)"),
    "Config max_views": (lambda: pc.Config(max_views=-1), "max_views must be an int >= 0; got -1"),
    "Config pixel_queue": (lambda: pc.Config(pixel_queue=-5), "pixel_queue must be an int >= 0"),
    "Config memory without queues": (lambda: pc.Config(arm="memory", pixel_queue=0, segment_queue=0), "needs pixel_queue"),
    "Config seed": (lambda: pc.Config(seed=-1), "seed must be an int >= 0"),
    "Config features": (lambda: pc.Config(features=(0, 8)), "features must be a tuple"),
    "Config temperature": (lambda: pc.Config(temperature=0), "temperature must be a positive"),
    "Config anchor_sampling": (lambda: pc.Config(anchor_sampling="semi-hard"), "anchor_sampling must be one of"),
    # train
    "train cfg": (lambda: pc.train(IMAGES, LABELS, {"arm": "ce"}, 3), "cfg must be a pixel_contrast.Config"),
    "train num_classes": (lambda: pc.train(IMAGES, LABELS, pc.Config(num_steps=1), 1), "num_classes must be an int >= 2"),
    "train images 4-d": (lambda: pc.train(IMAGES[:, None], LABELS, pc.Config(num_steps=1), 3), r"images must be a float \(N, H, W\)"),
    "train labels float": (lambda: pc.train(IMAGES, LABELS.float(), pc.Config(num_steps=1), 3), "labels must be an integer"),
    "train labels range": (lambda: pc.train(IMAGES, LABELS + 2, pc.Config(num_steps=1), 3), r"labels must lie in \[0, 2\]"),
    "train images NaN": (lambda: pc.train(_nan_images(), LABELS, pc.Config(num_steps=1), 3), "images must be finite"),
    "train empty": (lambda: pc.train(IMAGES[:0], LABELS[:0], pc.Config(num_steps=1), 3), "images is empty"),
    "train desc": (lambda: pc.train(IMAGES, LABELS, pc.Config(num_steps=1), 3, desc=3), "desc must be a str"),
    "train device": (lambda: pc.train(IMAGES, LABELS, pc.Config(num_steps=1), 3, device="tpu"), "tpu"),
    # predict / segmentation_scores / evaluate
    "predict model": (lambda: pc.predict("model", IMAGES), "model must be a torch.nn.Module"),
    "predict images int": (lambda: pc.predict(MODEL, LABELS), "images must be a float"),
    "predict images empty": (lambda: pc.predict(MODEL, IMAGES[:0]), "images must hold at least one image"),
    "predict batch_size": (lambda: pc.predict(MODEL, IMAGES, batch_size=0), "batch_size must be an int >= 1"),
    "scores shape": (lambda: pc.segmentation_scores(LABELS[:, :4], LABELS, 3), "same shape"),
    "scores float": (lambda: pc.segmentation_scores(LABELS.float(), LABELS, 3), "pred must be an integer"),
    "scores range": (lambda: pc.segmentation_scores(LABELS + 1, LABELS, 3), r"must lie in \[0, 2\]; got \[0, 3\]"),
    "scores num_classes": (lambda: pc.segmentation_scores(LABELS, LABELS, 1), "num_classes must be an int >= 2"),
    "evaluate model": (lambda: pc.evaluate(None, IMAGES, LABELS, 3), "model must be a torch.nn.Module"),
    "evaluate num_classes": (lambda: pc.evaluate(MODEL, IMAGES, LABELS, 2.5), "num_classes must be an int >= 2"),
    "evaluate labels shape": (lambda: pc.evaluate(MODEL, IMAGES, LABELS[:2], 3), "labels must be an integer"),
    # embeddings and diagnostics
    "pixel_embeddings model": (lambda: pc.pixel_embeddings(torch.nn.Conv2d(1, 1, 1), IMAGES), "model must be a UNetWithProjection"),
    "pixel_embeddings space": (lambda: pc.pixel_embeddings(MODEL, IMAGES, "logits"), "space must be 'features' or 'projection'"),
    "pixel_embeddings images": (lambda: pc.pixel_embeddings(MODEL, IMAGES[0]), r"images must be a float \(N, H, W\)"),
    "pixel_embeddings batch_size": (lambda: pc.pixel_embeddings(MODEL, IMAGES, batch_size=-1), "batch_size must be an int >= 1"),
    "sample_pixels labels float": (lambda: pc.sample_pixels(LABELS.float(), 5), "labels must be a non-empty integer"),
    "sample_pixels per_class": (lambda: pc.sample_pixels(LABELS, 0), "per_class must be a positive int; got 0"),
    "sample_pixels seed": (lambda: pc.sample_pixels(LABELS, 5, seed=-2), "seed must be an int >= 0"),
    "gather_pixels z": (lambda: pc.gather_pixels(EMB[0], torch.arange(3)), r"z must be a \(N, D, H, W\)"),
    "gather_pixels index float": (lambda: pc.gather_pixels(EMB, torch.zeros(3)), "index must be a 1-d integer tensor"),
    "gather_pixels index range": (lambda: pc.gather_pixels(EMB, torch.tensor([0, 128])), r"index must lie in \[0, 127\]"),
    "diagnostics z shape": (lambda: pc.embedding_diagnostics(Z[:, None], Y, 3, Z, Y), r"z must be \(M, D\)"),
    "diagnostics y float": (lambda: pc.embedding_diagnostics(Z, Y.float(), 3, Z, Y), "the classes of z must be integers"),
    "diagnostics D mismatch": (lambda: pc.embedding_diagnostics(Z, Y, 3, Z[:, :2], Y), "z and z_ref must have the same D"),
    "diagnostics y range": (lambda: pc.embedding_diagnostics(Z, Y, 2, Z, Y), r"y must lie in \[0, 1\]; got \[0, 2\]"),
    "diagnostics num_classes": (lambda: pc.embedding_diagnostics(Z, Y, 1, Z, Y), "num_classes must be an int >= 2"),
    "diagnostics empty": (lambda: pc.embedding_diagnostics(Z[:0], Y[:0], 3, Z, Y), "z must be a non-empty float"),
    "diagnose model": (lambda: pc.diagnose("m", IMAGES, LABELS, IMAGES, LABELS, 3), "model must be a UNetWithProjection"),
    "diagnose space": (lambda: pc.diagnose(MODEL, IMAGES, LABELS, IMAGES, LABELS, 3, space="x"), "space must be"),
    "diagnose labels range": (lambda: pc.diagnose(MODEL, IMAGES, LABELS + 5, IMAGES, LABELS, 3), "labels must lie in"),
    "diagnose per_class": (lambda: pc.diagnose(MODEL, IMAGES, LABELS, IMAGES, LABELS, 3, per_class=0), "per_class must be"),
    "similarity_map model": (lambda: pc.similarity_map(None, IMAGES[0], 0, 0), "model must be a UNetWithProjection"),
    "similarity_map image 3-d": (lambda: pc.similarity_map(MODEL, IMAGES, 0, 0), r"image must be a float \(H, W\)"),
    "similarity_map outside": (lambda: pc.similarity_map(MODEL, IMAGES[0], 16, 0), r"inside the 16×16 image; got \(16, 0\)"),
    "similarity_map float row": (lambda: pc.similarity_map(MODEL, IMAGES[0], 1.5, 0), r"\(row, col\) must lie inside"),
    # medtut.data.textures
    "texture_bank rng": (lambda: tx.texture_bank(0), "rng must be a numpy Generator"),
    "texture_bank size": (lambda: tx.texture_bank(RNG(), 8), "size must be an int >= 16 pixels; got 8"),
    "make_texture_image rng": (lambda: tx.make_texture_image(np.random.RandomState(0)), "rng must be a numpy Generator"),
    "make_texture_image size": (lambda: tx.make_texture_image(RNG(), size=64.0), "size must be an int >= 16"),
    "make_texture_image blob_sigma": (lambda: tx.make_texture_image(RNG(), blob_sigma=float("nan")), "blob_sigma must be > 0"),
    "make_texture_image noise order": (lambda: tx.make_texture_image(RNG(), noise=(0.6, 0.2)), "noise must be a range"),
    "make_texture_image noise scalar": (lambda: tx.make_texture_image(RNG(), noise=0.3), "noise must be a range"),
    "make_texture_image contrast": (lambda: tx.make_texture_image(RNG(), contrast=(-1.0, 1.0)), "contrast must be a range"),
    "make_texture_dataset n_images": (lambda: tx.make_texture_dataset(0), "n_images must be an int >= 1; got 0"),
    "make_texture_dataset seed": (lambda: tx.make_texture_dataset(2, seed=-1), "seed must be an int >= 0; got -1"),
    "make_texture_dataset size": (lambda: tx.make_texture_dataset(2, size=4), "size must be an int >= 16"),
    "load_decathlon_slices task": (lambda: tx.load_decathlon_slices("/nonexistent", "Task01_BrainTumour"), "task must be one of"),
    "load_decathlon_slices section": (lambda: tx.load_decathlon_slices("/nonexistent", section="test"), "section must be 'training' or 'validation'"),
    "load_decathlon_slices size": (lambda: tx.load_decathlon_slices("/nonexistent", size=4), "size must be an int >= 8"),
    "load_decathlon_slices min_foreground": (lambda: tx.load_decathlon_slices("/nonexistent", min_foreground=-1), "min_foreground must be an int >= 0"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_raises_a_clear_value_error(case):
    call, match = CASES[case]
    with pytest.raises(ValueError, match=match):
        call()


def test_every_public_function_is_covered():
    """Each public callable of both modules has at least one bad-input case above."""
    names = " ".join(CASES)
    covered = {"l2_normalize", "resize_labels", "make_model", "sample_anchors", "contrast_terms", "loss",
               "memory", "enqueue", "Config", "train", "predict", "scores", "evaluate", "pixel_embeddings",
               "sample_pixels", "gather_pixels", "diagnostics", "diagnose", "similarity_map", "texture_bank",
               "make_texture_image", "make_texture_dataset", "load_decathlon_slices"}
    assert all(name in names for name in covered)
    public = {n for n in pc.__all__ if callable(getattr(pc, n)) and n not in ("Anchors", "TrainResult")}
    aliases = {"pixel_contrast_loss": "loss", "PixelSegmentMemory": "memory", "memory_contrast_loss": "memory loss",
               "segmentation_scores": "scores", "embedding_diagnostics": "diagnostics"}
    assert all(aliases.get(n, n) in names for n in public), sorted(n for n in public if aliases.get(n, n) not in names)
    assert all(n in names for n in tx.__all__ if callable(getattr(tx, n)))
