"""Bad input to every public function of medtut.dip_nas and medtut.data.dip_images gets a ValueError (or
RuntimeError for the bounded draw loop) that names the argument, what was expected and what arrived
(issue 24: "bad input gets a clear error"; nothing loops without a bound)."""
import numpy as np
import pytest
import torch

from medtut import dip_nas as dn
from medtut.data import dip_images as di

NAN = float("nan")
IMG = di.load_test_image("camera", 16)
DEN = di.make_problem(IMG, "denoise", seed=0)
INP = di.make_problem(IMG, "inpaint", seed=0)
SR = di.make_problem(IMG, "sr", seed=0)
DEFAULT = dn.default_dip_arch(2)
NAME = DEFAULT.name
SKIP2 = ((1, 0), (0, 1))
OUTS = {"a": torch.rand(1, 8, 8), "b": torch.rand(1, 8, 8), "c": torch.rand(1, 8, 8)}
SCORES = {"a": 1.0, "b": 2.0, "c": 3.0}
TINY = dn.SearchSpace(levels=1, primitives=("bilinear",), conv_ops=("identity",), activations=("none",))
TINY_NAMES = ["bilinear-identity-k1-none-s0", "bilinear-identity-k1-none-s1"]          # the whole space (size 2)
NO_CUDA = not torch.cuda.is_available()


def _fit(**kw):
    args = dict(name=NAME, problems=DEN, num_steps=1, width=2, device="cpu")
    args.update(kw)
    return dn.fit_dip(args.pop("name"), args.pop("problems"), args.pop("num_steps"), **args)


def _problem(**kw):
    args = dict(task="denoise", name="x", clean=IMG, observed=DEN.observed)
    args.update(kw)
    return di.DIPProblem(**args)


CASES = {
    # --- the search space -------------------------------------------------------------------------
    "Arch: primitive": (lambda: dn.Arch("warp", "conv", 3, "relu", SKIP2), "primitive must be one of"),
    "Arch: conv_op": (lambda: dn.Arch("bilinear", "dense", 3, "relu", SKIP2), "conv_op must be one of"),
    "Arch: kernel 4": (lambda: dn.Arch("bilinear", "conv", 4, "relu", SKIP2), "kernel must be 1, 3, 5 or 7; got 4"),
    "Arch: kernel True": (lambda: dn.Arch("bilinear", "conv", True, "relu", SKIP2), "kernel must be 1, 3, 5 or 7; got True"),
    "Arch: activation": (lambda: dn.Arch("bilinear", "conv", 3, "gelu", SKIP2), "activation must be one of"),
    "Arch: skip not square": (lambda: dn.Arch("bilinear", "conv", 3, "relu", ((1, 0),)), "skip must be a square"),
    "Arch: skip bit 2": (lambda: dn.Arch("bilinear", "conv", 3, "relu", ((1, 2), (0, 1))), "skip must be a square .* of 0/1"),
    "Arch: skip int": (lambda: dn.Arch("bilinear", "conv", 3, "relu", 5), "skip must be a square"),
    "Arch: skip empty": (lambda: dn.Arch("bilinear", "conv", 3, "relu", ()), "with L >= 1"),
    # from_name blames the part at fault
    "from_name: None": (lambda: dn.Arch.from_name(None), "must be a string .*; got NoneType"),
    "from_name: 4 parts": (lambda: dn.Arch.from_name("bilinear-conv-k3-s1001"), "five parts .* with 4 part"),
    "from_name: primitive": (lambda: dn.Arch.from_name("warp-conv-k3-relu-s1001"), r"primitive \(part 1\) .*got 'warp'"),
    "from_name: conv op": (lambda: dn.Arch.from_name("bilinear-dense-k3-relu-s1001"), r"conv_op \(part 2\) .*got 'dense'"),
    "from_name: kernel letter": (lambda: dn.Arch.from_name("bilinear-conv-3-relu-s1001"), r"kernel part \(part 3\) .*got '3'"),
    "from_name: kernel not int": (lambda: dn.Arch.from_name("bilinear-conv-kx-relu-s1001"), r"kernel part \(part 3\) .*got 'kx'"),
    "from_name: kernel value": (lambda: dn.Arch.from_name("bilinear-conv-k4-relu-s1001"), "kernel must be 1, 3, 5 or 7; got 4"),
    "from_name: activation": (lambda: dn.Arch.from_name("bilinear-conv-k3-gelu-s1001"), r"activation \(part 4\) .*got 'gelu'"),
    "from_name: skip letter": (lambda: dn.Arch.from_name("bilinear-conv-k3-relu-x1001"), r"skip part \(part 5\) .*got 'x1001'"),
    "from_name: skip 3 bits": (lambda: dn.Arch.from_name("bilinear-conv-k3-relu-s101"), r"skip part \(part 5\) .*got 's101'"),
    "from_name: skip bit 2": (lambda: dn.Arch.from_name("bilinear-conv-k3-relu-s1021"), r"skip part \(part 5\) .*got 's1021'"),
    "from_name: skip empty": (lambda: dn.Arch.from_name("bilinear-conv-k3-relu-s"), r"skip part \(part 5\)"),
    "default_dip_arch: 0": (lambda: dn.default_dip_arch(0), "levels must be an int >= 1; got 0"),
    "default_dip_arch: 2.5": (lambda: dn.default_dip_arch(2.5), "levels must be an int >= 1; got 2.5"),
    "SearchSpace: levels 0": (lambda: dn.SearchSpace(levels=0), "levels must be an int >= 1; got 0"),
    "SearchSpace: primitive": (lambda: dn.SearchSpace(primitives=("warp",)), "primitives must be a non-empty tuple"),
    "SearchSpace: empty ops": (lambda: dn.SearchSpace(conv_ops=()), "conv_ops must be a non-empty tuple"),
    "SearchSpace: ops str": (lambda: dn.SearchSpace(conv_ops="conv"), "conv_ops must be a tuple of options"),
    "SearchSpace: kernel 4": (lambda: dn.SearchSpace(kernels=(3, 4)), r"kernels must be .*got \(3, 4\)"),
    "SearchSpace: duplicates": (lambda: dn.SearchSpace(activations=("relu", "relu")), "distinct options"),
    # sample_architectures: exclude counted, no endless loop
    "sample: n 0": (lambda: dn.sample_architectures(0), "n must be an int >= 1; got 0"),
    "sample: n 2.5": (lambda: dn.sample_architectures(2.5), "n must be an int >= 1; got 2.5"),
    "sample: n > space": (lambda: dn.sample_architectures(3, TINY), "cannot draw 3 .* space holds 2, of which 0 are excluded"),
    "sample: exclude leaves too few": (lambda: dn.sample_architectures(2, TINY, exclude=TINY_NAMES[:1]),
                                       "cannot draw 2 .* of which 1 are excluded, leaving 1"),
    "sample: exclude all": (lambda: dn.sample_architectures(1, TINY, exclude=TINY_NAMES), "leaving 0"),
    "sample: exclude str": (lambda: dn.sample_architectures(1, TINY, exclude=TINY_NAMES[0]), r"exclude=\[name\]"),
    "sample: exclude bad name": (lambda: dn.sample_architectures(1, TINY, exclude=["nope"]), "five parts"),
    "sample: space": (lambda: dn.sample_architectures(1, space="big"), "space must be a medtut.dip_nas.SearchSpace"),
    "sample: seed": (lambda: dn.sample_architectures(1, seed=0.5), "seed must be an int; got float"),
    # the network
    "UpCell: name": (lambda: dn.UpCell(NAME, 4), "arch must be a medtut.dip_nas.Arch"),
    "UpCell: channels 0": (lambda: dn.UpCell(DEFAULT, 0), "channels must be an int >= 1; got 0"),
    "SearchableNet: width 0": (lambda: dn.SearchableNet(DEFAULT, width=0), "width must be an int >= 1; got 0"),
    "SearchableNet: copies 0": (lambda: dn.SearchableNet(DEFAULT, copies=0), "copies must be an int >= 1; got 0"),
    "SearchableNet: name": (lambda: dn.SearchableNet(NAME), "arch must be a medtut.dip_nas.Arch"),
    "forward: not divisible": (lambda: dn.build_model(DEFAULT, 2, 1, 2, device="cpu")(torch.rand(1, 2, 10, 10)), "divisible by 2"),
    "forward: channels": (lambda: dn.build_model(DEFAULT, 2, 1, 2, device="cpu")(torch.rand(1, 3, 8, 8)), "expected 1 x 2 input channels"),
    "build_model: name int": (lambda: dn.build_model(3), "must be a string"),
    "build_model: bad name": (lambda: dn.build_model("bilinear-conv-k3"), "five parts"),
    "build_model: in_channels 0": (lambda: dn.build_model(NAME, 0, device="cpu"), "in_channels must be an int >= 1; got 0"),
    "build_model: copies 0": (lambda: dn.build_model(NAME, copies=0, device="cpu"), "copies must be an int >= 1; got 0"),
    "build_model: seed str": (lambda: dn.build_model(NAME, seed="0", device="cpu"), "seed must be an int; got str"),
    "build_model: device gpu": (lambda: dn.build_model(NAME, device="gpu"), "'gpu' is not a torch device name: use 'cuda'"),
    "build_model: device cuda": (lambda: dn.build_model(NAME, device="cuda" if NO_CUDA else "cuda:99"), "CUDA device"),
    "build_model: device nonsense": (lambda: dn.build_model(NAME, device="tpu0"), "device must name a torch device"),
    "build_model: device int": (lambda: dn.build_model(NAME, device=0), "device must be None, a string"),
    "input_code: 3 dims": (lambda: dn.input_code((1, 8, 8), 0), r"shape must be \(B, C, H, W\) positive ints"),
    "input_code: zero": (lambda: dn.input_code((1, 0, 8, 8), 0), r"shape must be \(B, C, H, W\) positive ints"),
    "input_code: scale 0": (lambda: dn.input_code((1, 1, 8, 8), 0, scale=0.0), r"scale must be a finite number in \(0, inf\)"),
    "input_code: scale nan": (lambda: dn.input_code((1, 1, 8, 8), 0, scale=NAN), "scale must be a finite number"),
    "input_code: seed None": (lambda: dn.input_code((1, 1, 8, 8), None), "seed must be an int"),
    # fitting
    "fit_dip: num_steps 0": (lambda: _fit(num_steps=0), "num_steps must be an int >= 1; got 0"),
    "fit_dip: num_steps 2.5": (lambda: _fit(num_steps=2.5), "num_steps must be an int >= 1; got 2.5"),
    "fit_dip: lr 0": (lambda: _fit(lr=0.0), r"lr must be a finite number in \(0, inf\); got 0.0"),
    "fit_dip: lr nan": (lambda: _fit(lr=NAN), "lr must be a finite number"),
    "fit_dip: jitter -1": (lambda: _fit(jitter=-1.0), r"jitter must be a finite number in \[0, inf\)"),
    "fit_dip: ema 1": (lambda: _fit(ema=1.0), r"ema must be a finite number in \[0, 1\); got 1.0"),
    "fit_dip: ema nan": (lambda: _fit(ema=NAN), "ema must be a finite number"),
    "fit_dip: width 0": (lambda: _fit(width=0), "width must be an int >= 1; got 0"),
    "fit_dip: in_channels 1.5": (lambda: _fit(in_channels=1.5), "in_channels must be an int >= 1; got 1.5"),
    "fit_dip: seed float": (lambda: _fit(seed=1.5), "seed must be an int"),
    "fit_dip: device gpu": (lambda: _fit(device="gpu"), "'gpu' is not a torch device name"),
    "fit_dip: device cuda": (lambda: _fit(device="cuda" if NO_CUDA else "cuda:99"), "CUDA device"),
    "fit_dip: problems None": (lambda: _fit(problems=None), "problems must be a DIPProblem or a non-empty list"),
    "fit_dip: problems empty": (lambda: _fit(problems=[]), "problems must be a DIPProblem or a non-empty list"),
    "fit_dip: problems tensor list": (lambda: _fit(problems=[IMG]), "problems must be a DIPProblem"),
    "fit_dip: shapes differ": (lambda: _fit(problems=[DEN, di.make_problem(di.load_test_image("camera", 8), "denoise")]),
                               "must share the image shape"),
    "fit_dip: not divisible": (lambda: _fit(name=dn.default_dip_arch(5)), "needs image sides divisible by 2\\^5 = 32; the problems are 16x16"),
    "fit_dip: bad name": (lambda: _fit(name="bilinear-conv-k3-relu-s10"), r"skip part \(part 5\)"),
    "train_pool: names str": (lambda: dn.train_pool(NAME, [DEN], 1), "names must be a list of architecture names"),
    "train_pool: names empty": (lambda: dn.train_pool([], [DEN], 1), "non-empty list"),
    "train_pool: duplicates": (lambda: dn.train_pool([NAME, NAME], [DEN], 1), "must not repeat"),
    "train_pool: bad name": (lambda: dn.train_pool(["nope"], [DEN], 1), "five parts"),
    "train_pool: num_steps 0": (lambda: dn.train_pool([NAME], [DEN], 0), "num_steps must be an int >= 1"),
    "train_pool: problems": (lambda: dn.train_pool([NAME], None, 1), "problems must be a DIPProblem"),
    # spectra and metrics
    "psd: NaN": (lambda: dn.psd(np.full((4, 4), NAN)), "contains NaN or inf"),
    "psd: complex": (lambda: dn.psd(np.ones((4, 4), complex)), "must be a real-valued array"),
    "psd: 1-D": (lambda: dn.psd(np.zeros(5)), r"must be \(H, W\) or \(C, H, W\)"),
    "psd: strings": (lambda: dn.psd(np.array([["a", "b"], ["c", "d"]])), "real-valued"),
    "frequency_radius: 0": (lambda: dn.frequency_radius(0, 4), "h must be an int >= 1; got 0"),
    "frequency_radius: float": (lambda: dn.frequency_radius(4, 4.0), "w must be an int >= 1; got 4.0"),
    "strip_mask: low > high": (lambda: dn.strip_mask(8, 8, 0.2, 0.1), "need 0 <= low < high"),
    "strip_mask: negative": (lambda: dn.strip_mask(8, 8, -0.1, 0.1), "need 0 <= low < high"),
    "strip_mask: nan": (lambda: dn.strip_mask(8, 8, NAN, 0.1), "low must be a finite number"),
    "strip_mask: str": (lambda: dn.strip_mask(8, 8, 0.05, "0.1"), "high must be a finite number"),
    "db: negative": (lambda: dn.db(np.array([-1.0, 1.0])), "finite powers >= 0"),
    "db: nan": (lambda: dn.db(np.array([NAN])), "finite powers >= 0"),
    "db: eps 0": (lambda: dn.db(np.ones(3), eps=0.0), r"eps must be a finite number in \(0, inf\)"),
    "db: complex": (lambda: dn.db(np.ones(3, complex)), "p must be real powers"),
    "psd_db_mse: shapes": (lambda: dn.psd_db_mse(np.ones((8, 8)), np.ones((4, 4))), "same .C, H, W."),
    "strip_mse: no strip": (lambda: dn.strip_mse(np.ones((1, 4, 4)), np.ones((1, 4, 4))), "holds no frequency"),
    "strip_mse: strip scalar": (lambda: dn.strip_mse(np.ones((16, 16)), np.ones((16, 16)), strip=0.1), r"strip must be \(low, high\)"),
    "strip_wasserstein: NaN": (lambda: dn.strip_wasserstein(np.ones((16, 16)), np.full((16, 16), NAN)), "network output contains NaN"),
    "bandwidth_99: fraction 0": (lambda: dn.bandwidth_99(np.random.rand(8, 8), fraction=0.0), r"fraction must be a finite number in \(0, 1\]"),
    "bandwidth_99: fraction 1.5": (lambda: dn.bandwidth_99(np.random.rand(8, 8), fraction=1.5), "fraction must be"),
    "bandwidth_99: num_discs 1": (lambda: dn.bandwidth_99(np.random.rand(8, 8), num_discs=1), "num_discs must be an int >= 2"),
    "bandwidth_99: zero energy": (lambda: dn.bandwidth_99(np.zeros((8, 8))), "zero energy"),
    "psd_scores: unknown metric": (lambda: dn.psd_scores(np.ones((16, 16)), [np.ones((16, 16))], ["psnr"]), "metrics must be a non-empty list"),
    "psd_scores: metrics str": (lambda: dn.psd_scores(np.ones((16, 16)), [np.ones((16, 16))], "strip mse"), "a single one in a list"),
    "psd_scores: metrics empty": (lambda: dn.psd_scores(np.ones((16, 16)), [np.ones((16, 16))], []), "non-empty"),
    "psd_scores: outputs array": (lambda: dn.psd_scores(np.ones((16, 16)), np.ones((16, 16))), "outputs must be a list of images"),
    "psd_scores: shape": (lambda: dn.psd_scores(np.ones((16, 16)), [np.ones((8, 8))]), r"outputs\[0\] must have"),
    "psd_scores: NaN output": (lambda: dn.psd_scores(np.ones((16, 16)), [np.full((16, 16), NAN)]), r"outputs\[0\] contains NaN"),
    "psd_scores: no strip": (lambda: dn.psd_scores(np.ones((4, 4)), [np.ones((4, 4))], ["strip mse"]), "holds no frequency"),
    "psd_scores: zero energy": (lambda: dn.psd_scores(np.ones((16, 16)), [np.zeros((16, 16))], ["bandwidth 99%"]), "zero energy"),
    "psd_scores: fraction": (lambda: dn.psd_scores(np.ones((16, 16)), [np.ones((16, 16))], fraction=NAN), "fraction must be"),
    "random_output: problem": (lambda: dn.random_output(NAME, IMG, width=2, device="cpu"), "problem must be a DIPProblem"),
    "random_output: device cuda": (lambda: dn.random_output(NAME, DEN, device="cuda") if NO_CUDA else
                                   dn.random_output(NAME, DEN, device="cuda:99"), "CUDA"),
    "score: num_inits 0": (lambda: dn.score_architecture(NAME, DEN, num_inits=0), "num_inits must be an int >= 1; got 0"),
    "score: metrics": (lambda: dn.score_architecture(NAME, DEN, metrics=["nope"]), "metrics must be a non-empty list"),
    "score: seed": (lambda: dn.score_architecture(NAME, DEN, seed="0"), "seed must be an int"),
    "score: problems": (lambda: dn.score_architecture(NAME, [DEN, None]), "problems must be a DIPProblem"),
    "score: device gpu": (lambda: dn.score_architecture(NAME, DEN, device="gpu"), "'gpu' is not a torch device name"),
    # cohort, consensus, baselines
    "select_cohort: NaN score": (lambda: dn.select_cohort({"a": NAN, "b": 1.0}, 1), r"scores\['a'\] must be a finite number.*NaN score"),
    "select_cohort: inf score": (lambda: dn.select_cohort({"a": float("inf"), "b": 1.0}, 1), r"scores\['a'\] must be a finite"),
    "select_cohort: str score": (lambda: dn.select_cohort({"a": "1", "b": 1.0}, 1), r"scores\['a'\] must be a finite number; got str"),
    "select_cohort: empty": (lambda: dn.select_cohort({}, 1), "scores must be a non-empty dict"),
    "select_cohort: list": (lambda: dn.select_cohort([1.0, 2.0], 1), "scores must be a non-empty dict"),
    "select_cohort: k 0": (lambda: dn.select_cohort(SCORES, 0), "k must be an int >= 1; got 0"),
    "select_cohort: k too big": (lambda: dn.select_cohort(SCORES, 4), r"k must be in \[1, 3\]; got 4"),
    "select_cohort: k float": (lambda: dn.select_cohort(SCORES, 1.5), "k must be an int >= 1; got 1.5"),
    "rank_weights: NaN": (lambda: dn.rank_weights([1.0, NAN]), "finite numbers"),
    "rank_weights: empty": (lambda: dn.rank_weights([]), "non-empty 1-D"),
    "rank_weights: 2-D": (lambda: dn.rank_weights([[1.0, 2.0]]), "non-empty 1-D"),
    "consensus: empty": (lambda: dn.consensus_pick({}, SCORES), "at least one trained output"),
    "consensus: not a dict": (lambda: dn.consensus_pick([torch.rand(1, 8, 8)], SCORES), "outputs must be a dict"),
    "consensus: missing score": (lambda: dn.consensus_pick(OUTS, {"a": 1.0}), r"no score for \['b', 'c'\]"),
    "consensus: NaN score": (lambda: dn.consensus_pick(OUTS, {**SCORES, "b": NAN}), r"scores\['b'\] must be a finite"),
    "consensus: shapes differ": (lambda: dn.consensus_pick({**OUTS, "c": torch.rand(1, 4, 4)}, SCORES), "share one .C, H, W."),
    "consensus: NaN output": (lambda: dn.consensus_pick({**OUTS, "a": torch.full((1, 8, 8), NAN)}, SCORES), "NaN or inf"),
    "consensus: 2-D output": (lambda: dn.consensus_pick({**OUTS, "a": torch.rand(8, 8)}, SCORES), r"finite \(C, H, W\) image; got shape \(8, 8\)"),
    "consensus: complex output": (lambda: dn.consensus_pick({**OUTS, "a": torch.rand(1, 8, 8, dtype=torch.complex64)}, SCORES), "real tensor"),
    "consensus: list output": (lambda: dn.consensus_pick({**OUTS, "a": [[0.0]]}, SCORES), r"outputs\['a'\] must be a real tensor"),
    "isnas_pick: missing output": (lambda: dn.isnas_pick(SCORES, {"a": OUTS["a"]}, 2), r"no trained output for the cohort members \['b'\]"),
    "isnas_pick: NaN score": (lambda: dn.isnas_pick({**SCORES, "c": NAN}, OUTS, 2), "NaN score"),
    "isnas_pick: k 0": (lambda: dn.isnas_pick(SCORES, OUTS, 0), "k must be an int >= 1"),
    "random_cohort: k too big": (lambda: dn.random_cohort_psnrs(SCORES, OUTS, 4), r"k must be in \[1, 3\]"),
    "random_cohort: k 0": (lambda: dn.random_cohort_psnrs(SCORES, OUTS, 0), "k must be an int >= 1; got 0"),
    "random_cohort: resamples 0": (lambda: dn.random_cohort_psnrs(SCORES, OUTS, 2, num_resamples=0), "num_resamples must be an int >= 1"),
    "random_cohort: NaN PSNR": (lambda: dn.random_cohort_psnrs({**SCORES, "a": NAN}, OUTS, 2), r"pool_psnr\['a'\] must be a finite"),
    "random_cohort: missing output": (lambda: dn.random_cohort_psnrs({**SCORES, "d": 1.0}, OUTS, 2), r"no output for \['d'\]"),
    "random_cohort: seed": (lambda: dn.random_cohort_psnrs(SCORES, OUTS, 2, seed=None), "seed must be an int"),
    "kendall_tau: lengths": (lambda: dn.kendall_tau([1, 2], [1, 2, 3]), "same length >= 2"),
    "kendall_tau: one": (lambda: dn.kendall_tau([1], [1]), "same length >= 2"),
    "kendall_tau: NaN": (lambda: dn.kendall_tau([1, NAN, 3], [1, 2, 3]), "must be finite; got NaN"),
    "kendall_tau: strings": (lambda: dn.kendall_tau(["a", "b"], [1, 2]), "1-D sequences of real numbers"),
    "spanning_subset: n 0": (lambda: dn.spanning_subset(SCORES, 0), "n must be an int >= 1; got 0"),
    "spanning_subset: too many": (lambda: dn.spanning_subset(SCORES, 5), "needs 5 scored architectures besides include; scores has 3"),
    "spanning_subset: include > n": (lambda: dn.spanning_subset(SCORES, 1, include=["a", "b"]), "more than n = 1"),
    "spanning_subset: include str": (lambda: dn.spanning_subset(SCORES, 2, include="a"), "include must be a list"),
    "spanning_subset: NaN": (lambda: dn.spanning_subset({**SCORES, "a": NAN}, 2), r"scores\['a'\]"),
    # --- medtut.data.dip_images ------------------------------------------------------------------
    "to_grey_square: size 4": (lambda: di.to_grey_square(np.ones((16, 16)), 4), "size must be an int >= 8; got 4"),
    "to_grey_square: size float": (lambda: di.to_grey_square(np.ones((16, 16)), 16.0), "size must be an int >= 8; got 16.0"),
    "to_grey_square: 1-D": (lambda: di.to_grey_square(np.ones(16), 8), "expected a grey"),
    "to_grey_square: 2 channels": (lambda: di.to_grey_square(np.ones((16, 16, 2)), 8), "expected a grey"),
    "to_grey_square: NaN": (lambda: di.to_grey_square(np.full((16, 16), NAN), 8), "contains NaN or inf"),
    "to_grey_square: negative": (lambda: di.to_grey_square(-np.ones((16, 16)), 8), "must be >= 0"),
    "to_grey_square: complex": (lambda: di.to_grey_square(np.ones((16, 16), complex), 8), "real numbers; got dtype complex"),
    "to_grey_square: None": (lambda: di.to_grey_square(None, 8), "image must be an array"),
    "to_grey_square: empty": (lambda: di.to_grey_square(np.ones((0, 16)), 8), "image is empty"),
    "load_test_image: name": (lambda: di.load_test_image("lena"), "unknown image 'lena'; available offline"),
    "load_test_image: None": (lambda: di.load_test_image(None), "unknown image None"),
    "load_test_image: size": (lambda: di.load_test_image("camera", 0), "size must be an int >= 8; got 0"),
    "load_image_folder: missing": (lambda: di.load_image_folder("/nonexistent/folder"), "does not exist or is not a folder"),
    "load_image_folder: None": (lambda: di.load_image_folder(None), "folder must be a path"),
    "load_image_folder: limit 0": (lambda: di.load_image_folder(".", limit=0), "limit must be an int >= 1; got 0"),
    "load_image_folder: limit -1": (lambda: di.load_image_folder(".", limit=-1), "limit must be an int >= 1; got -1"),
    "load_benchmark: name": (lambda: di.load_benchmark("set99"), "unknown image set 'set99'"),
    "load_benchmark: size": (lambda: di.load_benchmark("set5", size=2), "size must be an int >= 8; got 2"),
    "load_benchmark: limit": (lambda: di.load_benchmark("set5", limit=0), "limit must be an int >= 1; got 0"),
    "load_benchmark: root": (lambda: di.load_benchmark("set5", root=3), "root must be a path"),
    "downsample: 3-D": (lambda: di.downsample(torch.rand(1, 8, 8), 4), r"expects \(B, C, H, W\)"),
    "downsample: numpy": (lambda: di.downsample(np.ones((1, 1, 8, 8)), 4), "image must be a torch tensor"),
    "downsample: int dtype": (lambda: di.downsample(torch.ones(1, 1, 8, 8, dtype=torch.long), 4), "floating-point"),
    "downsample: factor 0": (lambda: di.downsample(torch.rand(1, 1, 8, 8), 0), "factor must be an int >= 1; got 0"),
    "downsample: factor 2.0": (lambda: di.downsample(torch.rand(1, 1, 8, 8), 2.0), "factor must be an int >= 1; got 2.0"),
    "downsample: not divisible": (lambda: di.downsample(torch.rand(1, 1, 30, 30), 4), "divisible by the SR factor 4"),
    "make_problem: task": (lambda: di.make_problem(IMG, "deblur"), "task must be one of"),
    "make_problem: range": (lambda: di.make_problem(IMG * 3, "denoise"), r"values must lie in \[0, 1\]"),
    "make_problem: 2-D": (lambda: di.make_problem(IMG[0], "denoise"), r"\(C, H, W\) float tensor"),
    "make_problem: int": (lambda: di.make_problem((IMG * 255).long(), "denoise"), "float tensor"),
    "make_problem: NaN": (lambda: di.make_problem(IMG * NAN, "denoise"), "contains NaN or inf"),
    "make_problem: None": (lambda: di.make_problem(None, "denoise"), "image must be a .C, H, W. float tensor"),
    "make_problem: keep 0": (lambda: di.make_problem(IMG, "inpaint", keep=0.0), r"keep must be in \(0, 1\]; got 0.0"),
    "make_problem: keep nan": (lambda: di.make_problem(IMG, "inpaint", keep=NAN), r"keep must be in \(0, 1\]"),
    "make_problem: sigma -1": (lambda: di.make_problem(IMG, "denoise", sigma=-1.0), r"sigma must be a finite number in \[0, inf\)"),
    "make_problem: sigma nan": (lambda: di.make_problem(IMG, "denoise", sigma=NAN), "sigma must be a finite number"),
    "make_problem: factor 0": (lambda: di.make_problem(IMG, "sr", factor=0), "factor must be an int >= 1; got 0"),
    "make_problem: factor 3": (lambda: di.make_problem(IMG, "sr", factor=3), "16x16 must be divisible by the SR factor 3"),
    "make_problem: seed": (lambda: di.make_problem(IMG, "denoise", seed=0.5), "seed must be an int"),
    "make_problem: name": (lambda: di.make_problem(IMG, "denoise", name=3), "name must be a string"),
    "DIPProblem: task": (lambda: _problem(task="deblur"), "task must be one of"),
    "DIPProblem: clean 2-D": (lambda: _problem(clean=IMG[0]), r"clean must be a \(C, H, W\) floating-point tensor"),
    "DIPProblem: observed shape": (lambda: _problem(observed=SR.observed), r"observed must be \(1, 16, 16\) for task 'denoise'"),
    "DIPProblem: sr observed shape": (lambda: _problem(task="sr"), r"observed must be \(1, 4, 4\) for task 'sr'"),
    "DIPProblem: inpaint without mask": (lambda: _problem(task="inpaint"), "an inpainting problem needs a mask"),
    "DIPProblem: keep 2": (lambda: _problem(keep=2.0), r"keep must be a finite number in \(0, 1\]"),
    "DIPProblem: factor 0": (lambda: _problem(factor=0), "factor must be an int >= 1"),
    "degrade: 3-D": (lambda: INP.degrade(torch.rand(1, 16, 16)), r"x must be a batch \(B, C, H, W\)"),
    "degrade: wrong size": (lambda: DEN.degrade(torch.rand(1, 1, 8, 8)), r"shaped like the clean image \(1, 16, 16\)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_raises_clear_error(case):
    call, message = CASES[case]
    with pytest.raises(ValueError, match=message):
        call()


def test_sampling_with_exclude_still_finds_every_remaining_architecture():
    # the whole rest of a small space is found (no hang), and nothing excluded comes back
    assert dn.sample_architectures(1, TINY, exclude=TINY_NAMES[:1]) == TINY_NAMES[1:]
    small = dn.SearchSpace(levels=1, primitives=("bilinear", "nearest"), conv_ops=("identity", "conv"), kernels=(3,),
                           activations=("relu",))
    every = dn.sample_architectures(small.size, small, seed=1)
    assert len(set(every)) == small.size == 8
    excl = every[:3]
    rest = dn.sample_architectures(small.size - 3, small, seed=2, exclude=excl)
    assert set(rest) == set(every) - set(excl)
    # names outside the space do not count against it
    assert len(dn.sample_architectures(small.size, small, exclude=["bicubic-conv-k3-relu-s1"])) == small.size


def test_bounded_draw_loop_raises_instead_of_spinning(monkeypatch):
    # a generator that always draws the same architecture exhausts the bound and raises
    class Stuck:
        def __init__(self, *_):
            pass

        def choice(self, options):
            return options[0]

        def integers(self, lo, hi, size):
            return np.zeros(size, int)

    monkeypatch.setattr(dn.np.random, "default_rng", Stuck)
    with pytest.raises(RuntimeError, match="without finding 2 distinct new ones"):
        dn.sample_architectures(2, TINY)


def test_valid_input_unchanged():
    # the checks sit before the computation: a NaN-free cohort, the default spaces and names still work
    assert dn.select_cohort({"a": 3.0, "b": 1.0, "c": 2.0}, 2) == ["b", "c"]
    assert dn.Arch.from_name(NAME) == DEFAULT
    assert dn.spanning_subset({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 5.0}, 4, include=["x"]) == ["x", "a", "c", "e"]
    assert dn.spanning_subset(SCORES, 2, include=["b", "c"]) == ["b", "c"]
