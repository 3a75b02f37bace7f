"""Bad input to every public function of medtut.mr_sampling and medtut.data.brain_phantoms gets a ValueError (or
TypeError) that names the argument, what was expected and what arrived (issue 24: "bad input gets a clear error")."""
import numpy as np
import pytest
import torch

from medtut import mr_sampling as mr
from medtut.data import brain_phantoms as bp

NAN = float("nan")
HW = (16, 16)
MASK = mr.cartesian_mask(HW, 4, center_lines=2, seed=0)
X = torch.rand(*HW, generator=torch.Generator().manual_seed(0))
XC = X.to(torch.complex64)
Y = mr.forward_op(XC, MASK)                                   # (1, 16, 16)
SENS = mr.coil_sensitivities(3, HW)
Y3 = mr.forward_op(XC, MASK, SENS)                            # (3, 16, 16)
MU = torch.rand(2, *HW)
KW = dict(noise_std=0.01, decoder_std=0.14)
_VAE = {}


def vae():
    if not _VAE:
        torch.manual_seed(0)
        _VAE["v"] = mr.SpatialVAE(16, latent_channels=2, n_down=2, width=4)
    return _VAE["v"]


def lp(z):
    return -0.5 * (z ** 2).flatten(1).sum(1)


Z = torch.zeros(2, 3)
SAMPLES = torch.rand(5, *HW)


def _train(**kw):
    args = dict(num_steps=2, batch_size=2, latent_channels=2, n_down=2, width=4, progress=False)
    args.update(kw)
    return mr.train_vae(args.pop("images", torch.rand(4, 1, 16, 16)), **args)


def _sample(**kw):
    args = dict(noise_std=0.01, num_chains=2, num_steps=6, burn_in=2, thin=2)
    args.update(kw)
    return mr.sample_reconstructions(args.pop("kspace", Y), args.pop("mask", MASK), args.pop("vae", vae()), **args)


CASES = {
    # MR physics
    "fft2c: real input": (lambda: mr.fft2c(X), ValueError, "x must be a complex tensor"),
    "fft2c: a list": (lambda: mr.fft2c([1, 2]), ValueError, "x must be a torch tensor"),
    "ifft2c: 1-D": (lambda: mr.ifft2c(torch.zeros(4, dtype=torch.complex64)), ValueError, "at least 2 dims"),
    "mask: shape None": (lambda: mr.cartesian_mask(None, 4), ValueError, r"shape must be a pair of ints \(H, W\)"),
    "mask: shape 3-D": (lambda: mr.cartesian_mask((4, 4, 4), 2), ValueError, "shape must be a pair of ints"),
    "mask: tiny shape": (lambda: mr.cartesian_mask((2, 16), 2), ValueError, r"H, W >= 4; got \(2, 16\)"),
    "mask: acceleration 0.5": (lambda: mr.cartesian_mask(HW, 0.5), ValueError, "acceleration must be a finite number >= 1"),
    "mask: acceleration nan": (lambda: mr.cartesian_mask(HW, NAN), ValueError, "acceleration must be a finite number"),
    "mask: acceleration > W": (lambda: mr.cartesian_mask(HW, 17), ValueError, "and <= 16"),
    "mask: acceleration str": (lambda: mr.cartesian_mask(HW, "4"), TypeError, "acceleration must be a finite number"),
    "mask: center_lines -1": (lambda: mr.cartesian_mask(HW, 2, center_lines=-1), ValueError, "center_lines must be an int >= 0"),
    "mask: center_lines 2.5": (lambda: mr.cartesian_mask(HW, 2, center_lines=2.5), TypeError, "center_lines must be an int"),
    "mask: center_lines too many": (lambda: mr.cartesian_mask(HW, 4, center_lines=8), ValueError, "center_lines must be in"),
    "mask: kind radial": (lambda: mr.cartesian_mask(HW, 4, kind="radial"), ValueError, "kind must be 'variable_density'"),
    "mask: decay -1": (lambda: mr.cartesian_mask(HW, 4, decay=-1.0), ValueError, "decay must be a finite number >= 0"),
    "mask: seed -1": (lambda: mr.cartesian_mask(HW, 4, seed=-1), ValueError, "seed must be an int >= 0"),
    "acceleration_of: all False": (lambda: mr.acceleration_of(torch.zeros(HW, dtype=torch.bool)), ValueError,
                                   r"samples no k-space point \(all False\)"),
    "acceleration_of: 1-D": (lambda: mr.acceleration_of(torch.ones(8, dtype=torch.bool)), ValueError, r"non-empty \(H, W\)"),
    "acceleration_of: values 0..2": (lambda: mr.acceleration_of(torch.arange(16).reshape(4, 4) % 3), ValueError,
                                     "mask must be bool"),
    "acceleration_of: None": (lambda: mr.acceleration_of(None), TypeError, "mask must be a"),
    "coils: radius 1 (NaN maps)": (lambda: mr.coil_sensitivities(4, (9, 9), radius=1.0), ValueError,
                                   "radius must be a finite number > 1"),
    "coils: radius nan": (lambda: mr.coil_sensitivities(4, (9, 9), radius=NAN), ValueError, "radius must be a finite"),
    "coils: radius 0.5 (coil inside)": (lambda: mr.coil_sensitivities(2, HW, radius=0.5), ValueError,
                                        "coils must sit outside the image's inscribed circle"),
    "coils: n_coils 0": (lambda: mr.coil_sensitivities(0, HW), ValueError, "n_coils must be an int >= 1"),
    "coils: n_coils 2.0": (lambda: mr.coil_sensitivities(2.0, HW), TypeError, "n_coils must be an int"),
    "coils: shape int": (lambda: mr.coil_sensitivities(2, 16), ValueError, "shape must be a pair of ints"),
    "forward: real x": (lambda: mr.forward_op(X, MASK), ValueError, "x must be a complex tensor"),
    "forward: mask shape": (lambda: mr.forward_op(XC, MASK[:8]), ValueError, "mask must have the image's shape"),
    "forward: mask float 0.5": (lambda: mr.forward_op(XC, MASK * 0.5), ValueError, "mask must be bool"),
    "forward: mask list": (lambda: mr.forward_op(XC, [[1]]), ValueError, "mask must be a torch tensor"),
    "forward: real sens": (lambda: mr.forward_op(XC, MASK, SENS.abs()), ValueError, "sens must be a complex tensor"),
    "forward: sens shape": (lambda: mr.forward_op(XC, MASK, SENS[:, :8]), ValueError, r"sens must be \(C, H, W\)"),
    "adjoint: no coil axis": (lambda: mr.adjoint_op(Y[0], MASK), ValueError, "y must be .* with a coil axis"),
    "adjoint: coil count": (lambda: mr.adjoint_op(Y, MASK, SENS), ValueError, "y has 1 coils but sens has 3"),
    "zero_filled: real y": (lambda: mr.zero_filled(Y.real, MASK), ValueError, "y must be a complex tensor"),
    "noise: std -1": (lambda: mr.add_complex_noise(Y, -1.0), ValueError, "noise_std must be a finite number >= 0"),
    "noise: std nan": (lambda: mr.add_complex_noise(Y, NAN), ValueError, "noise_std must be a finite number"),
    "noise: generator int": (lambda: mr.add_complex_noise(Y, 0.1, generator=0), TypeError, "generator must be None or a torch.Generator"),
    "noise: real kspace": (lambda: mr.add_complex_noise(Y.real, 0.1), ValueError, "kspace must be a complex tensor"),
    "cg: n_iters -1": (lambda: mr.conjugate_gradient(lambda v: v, torch.ones(2, 3), n_iters=-1), ValueError,
                       "n_iters must be an int >= 1"),
    "cg: n_iters 0": (lambda: mr.conjugate_gradient(lambda v: v, torch.ones(2, 3), n_iters=0), ValueError,
                      "n_iters must be an int >= 1"),
    "cg: tol nan": (lambda: mr.conjugate_gradient(lambda v: v, torch.ones(2, 3), tol=NAN), ValueError, "tol must be a finite"),
    "cg: A not callable": (lambda: mr.conjugate_gradient(torch.eye(3), torch.ones(2, 3)), TypeError, "apply_A must be a callable"),
    "cg: b empty": (lambda: mr.conjugate_gradient(lambda v: v, torch.ones(0, 3)), ValueError, "b must be a non-empty"),
    "cg: b int": (lambda: mr.conjugate_gradient(lambda v: v, torch.ones(2, 3, dtype=torch.long)), ValueError,
                  "real or complex float tensor"),
    "cg: x0 shape": (lambda: mr.conjugate_gradient(lambda v: v, torch.ones(2, 3), x0=torch.ones(3)), ValueError,
                     r"x0 must be None or a tensor of b's shape \(2, 3\)"),
    "cg: A changes shape": (lambda: mr.conjugate_gradient(lambda v: v[:, :2], torch.ones(2, 3)), ValueError,
                            "apply_A must return the shape"),
    # the VAE
    "VAE: image_size 20 (not /8)": (lambda: mr.SpatialVAE(20), ValueError, "divisible by 2\\*\\*n_down = 8"),
    "VAE: n_down -1": (lambda: mr.SpatialVAE(16, n_down=-1), ValueError, "n_down must be an int >= 0"),
    "VAE: latent_channels 0": (lambda: mr.SpatialVAE(16, latent_channels=0), ValueError, "latent_channels must be an int >= 1"),
    "VAE: width 0": (lambda: mr.SpatialVAE(16, width=0), ValueError, "width must be an int >= 1"),
    "VAE: precision 0": (lambda: mr.SpatialVAE(16, decoder_precision=0.0), ValueError, "decoder_precision must be a finite number > 0"),
    "VAE: precision nan": (lambda: mr.SpatialVAE(16, decoder_precision=NAN), ValueError, "decoder_precision must be"),
    "VAE: image_size 4 < 2**n_down": (lambda: mr.SpatialVAE(4, n_down=3), ValueError, "image_size must be an int >= 8"),
    "encode: wrong size": (lambda: vae().encode(torch.zeros(2, 1, 12, 12)), ValueError, r"x must be \(B, 1, 16, 16\)"),
    "encode: complex": (lambda: vae().encode(torch.zeros(2, 1, 16, 16, dtype=torch.complex64)), ValueError, "real float tensor"),
    "encode: empty batch": (lambda: vae().encode(torch.zeros(0, 1, 16, 16)), ValueError, r"x must be \(B, 1, 16, 16\)"),
    "decode: wrong latent": (lambda: vae().decode(torch.zeros(2, 3, 4, 4)), ValueError, r"z must be \(B, 2, 4, 4\)"),
    "decode: int latent": (lambda: vae().decode(torch.zeros(2, 2, 4, 4, dtype=torch.long)), ValueError, "z must be a real float"),
    "elbo: x vs x_mean": (lambda: mr.negative_elbo(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 3), torch.zeros(2, 1),
                                                   torch.zeros(2, 1)), ValueError, "x and x_mean must have the same shape"),
    "elbo: mean vs logvar batch": (lambda: mr.negative_elbo(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4),
                                                            torch.zeros(2, 3), torch.zeros(1, 3)), ValueError,
                                   "z_mean and z_logvar must have the same shape"),
    "elbo: latent vs image batch": (lambda: mr.negative_elbo(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4),
                                                             torch.zeros(3, 3), torch.zeros(3, 3)), ValueError,
                                    "same batch B; got 2 images and 3 latents"),
    "elbo: precision -1": (lambda: mr.negative_elbo(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4), torch.zeros(2, 3),
                                                    torch.zeros(2, 3), decoder_precision=-1.0), ValueError,
                           "decoder_precision must be a finite number > 0"),
    "elbo: None": (lambda: mr.negative_elbo(None, torch.zeros(2, 1, 4, 4), torch.zeros(2, 3), torch.zeros(2, 3)), TypeError,
                   "x must be a torch tensor"),
    "train: batch_size 0": (lambda: _train(batch_size=0), ValueError, "batch_size must be ints >= 1"),
    "train: num_steps 2.5": (lambda: _train(num_steps=2.5), ValueError, "num_steps and batch_size must be ints"),
    "train: lr 0": (lambda: _train(lr=0.0), ValueError, "lr must be a finite number > 0"),
    "train: lr nan": (lambda: _train(lr=NAN), ValueError, "lr must be a finite number"),
    "train: images 3-D": (lambda: _train(images=torch.rand(4, 16, 16)), ValueError, "images must have at least 4 dims"),
    "train: images 2 channels": (lambda: _train(images=torch.rand(4, 2, 16, 16)), ValueError, r"images must be \(N, 1, S, S\)"),
    "train: images NaN": (lambda: _train(images=torch.full((4, 1, 16, 16), NAN)), ValueError, "images contain NaN"),
    "train: images complex": (lambda: _train(images=torch.zeros(4, 1, 16, 16, dtype=torch.complex64)), ValueError,
                              "images must be a real floating-point tensor"),
    "train: images empty": (lambda: _train(images=torch.zeros(0, 1, 16, 16)), ValueError, "N >= 1"),
    "train: val shape": (lambda: _train(val_images=torch.rand(2, 1, 8, 8)), ValueError, "val_images must be"),
    "train: val NaN": (lambda: _train(val_images=torch.full((2, 1, 16, 16), NAN)), ValueError, "val_images contains NaN"),
    "train: size 12 (not /4)": (lambda: _train(images=torch.rand(4, 1, 12, 12), n_down=3), ValueError, "image_size must be"),
    "train: device 'gpu'": (lambda: _train(device="gpu"), ValueError, "'gpu' is not a torch device name"),
    "train: device 'cuda' without CUDA": (lambda: _train(device="cuda") if not torch.cuda.is_available() else
                                          _train(device="nonsense"), ValueError, "device"),
    "train: device 'nonsense'": (lambda: _train(device="nonsense"), ValueError, "device must name a torch device"),
    "train: device 3": (lambda: _train(device=3), ValueError, "device must be None, a string"),
    "train: seed -1": (lambda: _train(seed=-1), ValueError, "seed must be an int >= 0"),
    # the latent posterior
    "loglik: noise_std 0": (lambda: mr.log_likelihood(MU, Y, MASK, noise_std=0.0, decoder_std=0.1), ValueError,
                            "noise_std must be a finite number > 0"),
    "loglik: decoder_std nan": (lambda: mr.log_likelihood(MU, Y, MASK, noise_std=0.1, decoder_std=NAN), ValueError,
                                "decoder_std must be a finite number > 0"),
    "loglik: method": (lambda: mr.log_likelihood(MU, Y, MASK, method="exact", **KW), ValueError,
                       "method must be 'auto', 'closed_form' or 'cg'"),
    "loglik: closed form with coils": (lambda: mr.log_likelihood(MU, Y3, MASK, sens=SENS, method="closed_form", **KW),
                                       ValueError, "closed_form' needs a single coil"),
    "loglik: cg_iters 0": (lambda: mr.log_likelihood(MU, Y, MASK, method="cg", cg_iters=0, **KW), ValueError,
                           "cg_iters must be an int >= 1"),
    "loglik: image_mean 2-D": (lambda: mr.log_likelihood(MU[0], Y, MASK, **KW), ValueError, r"image_mean must be \(B, H, W\)"),
    "loglik: image_mean size": (lambda: mr.log_likelihood(MU[:, :8], Y, MASK, **KW), ValueError, "image_mean must be"),
    "loglik: kspace coils vs sens": (lambda: mr.log_likelihood(MU, Y, MASK, sens=SENS, **KW), ValueError,
                                     r"kspace must be \(C, H, W\) complex with C = 3"),
    "prior: complex z": (lambda: mr.latent_log_prior(torch.zeros(2, 3, dtype=torch.complex64)), ValueError,
                         "z must be a real floating-point tensor"),
    "posterior: not a VAE": (lambda: mr.latent_log_posterior(torch.nn.Linear(2, 2), Y, MASK, noise_std=0.01), TypeError,
                             "vae must be a trained SpatialVAE"),
    "posterior: size vs VAE": (lambda: mr.latent_log_posterior(vae(), mr.forward_op(torch.zeros(8, 8, dtype=torch.complex64),
                                                                                    MASK[:8, :8]), MASK[:8, :8],
                                                               noise_std=0.01), ValueError, r"y must be \(16, 16\) to match the VAE"),
    "posterior: noise_std -1": (lambda: mr.latent_log_posterior(vae(), Y, MASK, noise_std=-1.0), ValueError,
                                "noise_std must be a finite number > 0"),
    "posterior: method": (lambda: mr.latent_log_posterior(vae(), Y, MASK, noise_std=0.01, method="fft"), ValueError,
                          "method must be"),
    "dc image: decoder_std 0": (lambda: mr.data_consistent_image(MU, Y, MASK, noise_std=0.01, decoder_std=0.0), ValueError,
                                "decoder_std must be a finite number > 0"),
    "dc image: cg_iters 0": (lambda: mr.data_consistent_image(MU, Y3, MASK, sens=SENS, cg_iters=0, **KW), ValueError,
                             "cg_iters must be an int >= 1"),
    "dc image: int mean": (lambda: mr.data_consistent_image(MU.long(), Y, MASK, **KW), ValueError,
                           "image_mean must be a real or complex float tensor"),
    "x|y,z: noise_std nan": (lambda: mr.sample_image_posterior(MU, Y, MASK, noise_std=NAN, decoder_std=0.1), ValueError,
                             "noise_std must be a finite number > 0"),
    "x|y,z: generator": (lambda: mr.sample_image_posterior(MU, Y, MASK, generator=np.random.default_rng(0), **KW), TypeError,
                         "generator must be None or a torch.Generator"),
    "x|y,z: image_mean shape": (lambda: mr.sample_image_posterior(MU[0], Y, MASK, **KW), ValueError, r"image_mean must be \(B, H, W\)"),
    "x|y,z: real kspace": (lambda: mr.sample_image_posterior(MU, Y.real, MASK, **KW), ValueError, "kspace must be a complex"),
    # MALA and its diagnostics
    "mala: log_prob not callable": (lambda: mr.mala(None, Z, 10), TypeError, "log_prob must be a callable"),
    "mala: z0 1-D": (lambda: mr.mala(lp, torch.zeros(3), 10), ValueError, r"z0 must be a float tensor \(num_chains, \*shape\)"),
    "mala: z0 no chains": (lambda: mr.mala(lp, torch.zeros(0, 3), 10), ValueError, "z0 must be a float tensor"),
    "mala: z0 NaN": (lambda: mr.mala(lp, Z * NAN, 10), ValueError, "z0 contains NaN"),
    "mala: num_steps 0": (lambda: mr.mala(lp, Z, 0), ValueError, "num_steps must be an int >= 1"),
    "mala: num_steps 10.5": (lambda: mr.mala(lp, Z, 10.5), ValueError, "num_steps must be an int >= 1"),
    "mala: burn_in = num_steps": (lambda: mr.mala(lp, Z, 10, burn_in=10), ValueError, r"burn_in must be in \[0, num_steps\)"),
    "mala: burn_in 2.5": (lambda: mr.mala(lp, Z, 10, burn_in=2.5), ValueError, "burn_in must be None or an int"),
    "mala: thin 0": (lambda: mr.mala(lp, Z, 10, thin=0), ValueError, "thin must be an int >= 1"),
    "mala: thin too large": (lambda: mr.mala(lp, Z, 10, burn_in=5, thin=6), ValueError, "leave at least one sample"),
    "mala: step_size 0": (lambda: mr.mala(lp, Z, 10, step_size=0.0), ValueError, "step_size must be a positive finite"),
    "mala: step_size inf": (lambda: mr.mala(lp, Z, 10, step_size=float("inf")), ValueError, "step_size must be a positive"),
    "mala: step_size str": (lambda: mr.mala(lp, Z, 10, step_size="0.1"), ValueError, "step_size must be a positive"),
    "mala: target_accept 1": (lambda: mr.mala(lp, Z, 10, target_accept=1.0), ValueError, r"target_accept must be in \(0, 1\)"),
    "mala: restart_below -1": (lambda: mr.mala(lp, Z, 10, restart_below=-1.0), ValueError, "restart_below must be None or > 0"),
    "mala: precond negative": (lambda: mr.mala(lp, Z, 10, precond=-torch.ones(3)), ValueError, "precond must be positive"),
    "mala: precond shape": (lambda: mr.mala(lp, Z, 10, precond=torch.ones(4)), ValueError, r"precond must be positive with shape \(3,\)"),
    "mala: generator seed": (lambda: mr.mala(lp, Z, 10, generator=0), TypeError, "generator must be None or a torch.Generator"),
    "mala: log_prob shape": (lambda: mr.mala(lambda v: v.sum(), Z, 10), ValueError, r"log_prob must map .* to \(num_chains,\)"),
    "mala: log_prob -inf at z0": (lambda: mr.mala(lambda v: lp(v) - float("inf"), Z, 10), ValueError, "log_prob\\(z0\\) is not finite"),
    "proposal: shapes": (lambda: mr.mala_proposal(Z, torch.zeros(2, 4), 0.1, Z), ValueError,
                         "z, grad and noise must have the same shape"),
    "proposal: step 0": (lambda: mr.mala_proposal(Z, Z, 0.0, Z), ValueError, "step_size must be a finite number > 0"),
    "proposal: precond shape": (lambda: mr.mala_proposal(Z, Z, 0.1, Z, torch.ones(5)), ValueError, "precond must be positive"),
    "accept: lp shape": (lambda: mr.mala_log_accept_ratio(Z, torch.zeros(3), Z, Z, torch.zeros(2), Z, 0.1), ValueError,
                         r"lp must be a \(num_chains,\) = \(2,\) tensor"),
    "accept: z_new shape": (lambda: mr.mala_log_accept_ratio(Z, torch.zeros(2), Z, torch.zeros(2, 4), torch.zeros(2), Z, 0.1),
                            ValueError, "z, grad, z_new and grad_new must have the same shape"),
    "accept: step nan": (lambda: mr.mala_log_accept_ratio(Z, torch.zeros(2), Z, Z, torch.zeros(2), Z, NAN), ValueError,
                         "step_size must be a finite number > 0"),
    "rhat: too few draws": (lambda: mr.split_rhat(np.zeros((2, 3))), ValueError, "at least 4 draws per chain"),
    "rhat: 1-D": (lambda: mr.split_rhat(np.zeros(8)), ValueError, r"samples must be \(num_chains, n_draws, \*shape\)"),
    "rhat: NaN": (lambda: mr.split_rhat(np.full((2, 8), NAN)), ValueError, "non-empty and finite; .* NaN or inf"),
    "rhat: complex": (lambda: mr.split_rhat(torch.zeros(2, 8, dtype=torch.complex64)), ValueError, "samples must be real"),
    "ess: too few draws": (lambda: mr.effective_sample_size(np.zeros((2, 7))), ValueError, "at least 8 draws per chain"),
    "ess: strings": (lambda: mr.effective_sample_size([["a", "b"]]), ValueError, "samples must be a real array"),
    "ess: empty": (lambda: mr.effective_sample_size(np.zeros((2, 0))), ValueError, "non-empty and finite"),
    "linear posterior: shapes": (lambda: mr.gaussian_linear_posterior(torch.zeros(4, 2), torch.zeros(3), 1.0), ValueError,
                                 r"A must be \(n, d\) and y \(n,\)"),
    "linear posterior: sigma 0": (lambda: mr.gaussian_linear_posterior(torch.zeros(4, 2), torch.zeros(4), 0.0), ValueError,
                                  "noise_std must be a finite number > 0"),
    "linear posterior: int A": (lambda: mr.gaussian_linear_posterior(torch.zeros(4, 2, dtype=torch.long), torch.zeros(4), 1.0),
                                ValueError, "A must be a real floating-point tensor"),
    # the pipeline
    "sampler: num_chains 0": (lambda: _sample(num_chains=0), ValueError, "num_chains must be an int >= 1; got 0"),
    "sampler: unknown option n_chains": (lambda: _sample(n_chains=2), ValueError, r"unknown sampler option\(s\) \['n_chains'\]"),
    "sampler: burn_in >= num_steps": (lambda: _sample(burn_in=6), ValueError, r"burn_in must be an int in \[0, num_steps\)"),
    "sampler: thin leaves nothing": (lambda: _sample(thin=5), ValueError, "leaves no sample after burn-in"),
    "sampler: step_size nan": (lambda: _sample(step_size=NAN), ValueError, "step_size must be > 0"),
    "sampler: method": (lambda: _sample(method="exact"), ValueError, "method must be 'auto', 'closed_form' or 'cg'"),
    "sampler: precondition 1": (lambda: _sample(precondition=1), ValueError, "precondition must be True or False"),
    "sampler: restart_below 0": (lambda: _sample(restart_below=0.0), ValueError, "restart_below must be None or a number"),
    "sampler: noise_std 0": (lambda: _sample(noise_std=0.0), ValueError, "noise_std must be a positive number"),
    "sampler: noise_std nan": (lambda: _sample(noise_std=NAN), ValueError, "noise_std must be a positive number"),
    "sampler: NaN k-space": (lambda: _sample(kspace=Y * NAN), ValueError, "kspace contains NaN or inf"),
    "sampler: real k-space": (lambda: _sample(kspace=Y.real), ValueError, "kspace must be a complex tensor"),
    "sampler: size vs VAE": (lambda: _sample(kspace=Y[:, :8, :8], mask=MASK[:8, :8]), ValueError,
                             r"kspace must be \(16, 16\) to match the VAE"),
    "sampler: not a VAE": (lambda: _sample(vae="vae.pt"), TypeError, "vae must be a trained SpatialVAE"),
    "sampler: cfg dict": (lambda: mr.sample_reconstructions(Y, MASK, vae(), {"num_chains": 2}, noise_std=0.01), TypeError,
                          "cfg must be None or a SamplerConfig"),
    "sampler: seed -1": (lambda: _sample(seed=-1), ValueError, "seed must be an int >= 0"),
    "sampler: closed form with coils": (lambda: _sample(kspace=Y3, sens=SENS, method="closed_form"), ValueError,
                                        "closed_form' needs a single coil"),
    "config: num_steps 0": (lambda: mr.SamplerConfig(num_steps=0), ValueError, "num_steps must be an int >= 1"),
    "config: target_accept 0": (lambda: mr.SamplerConfig(target_accept=0.0), ValueError, "target_accept must be in"),
    "config: init_spread -1": (lambda: mr.SamplerConfig(init_spread=-1.0), ValueError, "init_spread must be >= 0"),
    "config: full_posterior str": (lambda: mr.SamplerConfig(full_posterior="yes"), ValueError, "full_posterior must be True or False"),
    # the TV baseline
    "tv: lam -1": (lambda: mr.tv_reconstruction(Y, MASK, lam=-1.0), ValueError, "lam must be a finite number >= 0"),
    "tv: lam nan": (lambda: mr.tv_reconstruction(Y, MASK, lam=NAN), ValueError, "lam must be a finite number"),
    "tv: num_iters 0": (lambda: mr.tv_reconstruction(Y, MASK, lam=0.01, num_iters=0), ValueError, "num_iters must be an int >= 1"),
    "tv: NaN k-space": (lambda: mr.tv_reconstruction(Y * NAN, MASK, lam=0.01), ValueError, "kspace contains NaN"),
    "tv: x0 shape": (lambda: mr.tv_reconstruction(Y, MASK, lam=0.01, x0=torch.zeros(8, 8)), ValueError,
                     r"x0 must be \(H, W\) = \(16, 16\)"),
    "tv: mask shape": (lambda: mr.tv_reconstruction(Y, MASK[:8], lam=0.01), ValueError, "mask must have the image's shape"),
    "tv objective: image int": (lambda: mr.tv_objective(X.long(), Y, MASK, lam=0.01), ValueError,
                                "image must be a real or complex float tensor"),
    "tv objective: lam str": (lambda: mr.tv_objective(X, Y, MASK, lam="0.1"), TypeError, "lam must be a finite number"),
    # evaluation
    "rmse: shapes": (lambda: mr.rmse_percent(X, X[:4]), ValueError, "image and reference must have the same shape"),
    "rmse: zero reference": (lambda: mr.rmse_percent(X, torch.zeros(HW)), ValueError, "reference is all zeros"),
    "rmse: NaN image": (lambda: mr.rmse_percent(X * NAN, X), ValueError, "image contains NaN"),
    "rmse: list": (lambda: mr.rmse_percent([1.0], X), TypeError, "image must be a tensor"),
    "rmse: empty": (lambda: mr.rmse_percent(torch.zeros(0), torch.zeros(0)), ValueError, "image and reference are empty"),
    "DC error: image size": (lambda: mr.data_consistency_error(X[:8], Y, MASK), ValueError, r"image must be \(H, W\) or \(B, H, W\)"),
    "DC error: zero y": (lambda: mr.data_consistency_error(X, Y * 0, MASK), ValueError, "y is zero on every sampled entry"),
    "DC error: int image": (lambda: mr.data_consistency_error(X.long(), Y, MASK), ValueError, "image must be a real or complex"),
    "coverage: level 1": (lambda: mr.interval_coverage(SAMPLES, X, 1.0), ValueError, r"level must be in \(0, 1\)"),
    "coverage: level nan": (lambda: mr.interval_coverage(SAMPLES, X, NAN), ValueError, "level must be a finite number"),
    "coverage: shapes": (lambda: mr.interval_coverage(SAMPLES, X[:8]), ValueError, r"samples must be \(n, H, W\)"),
    "coverage: region shape": (lambda: mr.interval_coverage(SAMPLES, X, region=torch.ones(4, 4, dtype=torch.bool)),
                               ValueError, "region must be None or a bool"),
    "coverage: empty region": (lambda: mr.interval_coverage(SAMPLES, X, region=torch.zeros(HW, dtype=torch.bool)),
                               ValueError, "region selects no pixel"),
    "coverage: complex samples": (lambda: mr.interval_coverage(SAMPLES.to(torch.complex64), X), ValueError,
                                  "samples must be a real floating-point tensor"),
    # the data module
    "phantoms: n 0": (lambda: bp.make_head_phantoms(0), ValueError, "n must be an int >= 1"),
    "phantoms: n True": (lambda: bp.make_head_phantoms(True), ValueError, "n must be an int >= 1"),
    "phantoms: size 8": (lambda: bp.make_head_phantoms(2, size=8), ValueError, "size must be an int >= 16"),
    "phantoms: size 32.0": (lambda: bp.make_head_phantoms(2, size=32.0), ValueError, "size must be an int >= 16"),
    "phantoms: seed -1": (lambda: bp.make_head_phantoms(2, seed=-1), ValueError, "seed must be an int >= 0"),
    "phantom: rng int": (lambda: bp.make_head_phantom(0), TypeError, "rng must be a numpy Generator"),
    "shepp-logan: size 4": (lambda: bp.shepp_logan(4), ValueError, "size must be an int >= 16"),
    "natural: unknown name": (lambda: bp.natural_image("lena"), ValueError, "name must be one of"),
    "natural: size 0": (lambda: bp.natural_image("camera", 0), ValueError, "size must be an int >= 16"),
    "brainweb: subject 3": (lambda: bp.brainweb_t1_slices(subjects=(3,)), ValueError, "subjects must be a non-empty list"),
    "brainweb: no subjects": (lambda: bp.brainweb_t1_slices(subjects=()), ValueError, "subjects must be a non-empty list"),
    "brainweb: subjects str": (lambda: bp.brainweb_t1_slices(subjects="4"), ValueError, "subjects must be a non-empty list"),
    "brainweb: slices 0": (lambda: bp.brainweb_t1_slices(slices_per_subject=0), ValueError, "slices_per_subject must be an int >= 1"),
    "brainweb: axis 3": (lambda: bp.brainweb_t1_slices(axis=3), ValueError, "axis must be 0, 1 or 2"),
    "fastmri: missing file": (lambda: bp.load_fastmri_slice("/nonexistent/file.h5"), ValueError, "no fastMRI file at"),
    "fastmri: path None": (lambda: bp.load_fastmri_slice(None), TypeError, "path must be a str or os.PathLike"),
    "fastmri: slice 1.5": (lambda: bp.load_fastmri_slice("x.h5", slice_index=1.5), ValueError, "slice_index must be None"),
    "fastmri image: size 8": (lambda: bp.fastmri_image("x.h5", size=8), ValueError, "size must be an int >= 16"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_raises_a_clear_error(case):
    call, error, match = CASES[case]
    with pytest.raises(error, match=match):
        call()


def test_fastmri_slice_index_out_of_range(tmp_path):
    import h5py
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=np.zeros((2, 4, 4), dtype=np.complex64))
    with pytest.raises(ValueError, match=r"slice_index must be in \[0, 1\]; got 5"):
        bp.load_fastmri_slice(path, slice_index=5)
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f.create_dataset("kspace", data=np.zeros((2, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="fastMRI kspace must be complex"):
        bp.load_fastmri_slice(tmp_path / "g.h5")


def test_valid_input_still_computes():
    """The checks sit before the computation: valid calls still return what they did."""
    assert mr.acceleration_of(MASK) == pytest.approx(4.0)
    assert torch.isfinite(mr.coil_sensitivities(4, (9, 9), radius=1.2)).all()
    out = mr.conjugate_gradient(lambda v: 2 * v, torch.ones(2, 3), n_iters=5)
    assert torch.allclose(out, torch.full((2, 3), 0.5))
