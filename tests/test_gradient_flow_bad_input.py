"""Bad input to medtut.gradient_flow gets a ValueError that names the argument, what was expected and what
arrived (issue: "bad input gets a clear error"). The encode/flow_loss input checks that existed before are
in tests/test_gradient_flow.py; this module adds the flow's own parameters and the remaining boundaries."""
import numpy as np
import pytest
import torch

from medtut import gradient_flow as gf

DEC = gf.make_decoder(2, 8, (4,))
X = torch.rand(3, 8)

CASES = {
    # the flow runs uphill with a negative speed or end time (formerly silent)
    "encode: tau -10 (torchdiffeq)": (lambda: gf.encode(DEC, X, method="euler", tau=-10.0), r"tau .* must be a finite number > 0"),
    "encode: tau -10 (amd)": (lambda: gf.encode(DEC, X, tau=-10.0), r"tau .* must be a finite number > 0"),
    "encode: tau nan": (lambda: gf.encode(DEC, X, method="euler", tau=float("nan")), "tau"),
    "encode: alpha -1": (lambda: gf.encode(DEC, X, method="euler", alpha=-1.0), "alpha must be a finite number > 0"),
    "encode: alpha 0": (lambda: gf.encode(DEC, X, alpha=0.0), "alpha must be a finite number > 0"),
    "encode: alpha inf": (lambda: gf.encode(DEC, X, alpha=float("inf")), "alpha must be a finite number > 0"),
    "encode: num_steps 0": (lambda: gf.encode(DEC, X, method="euler", num_steps=0), "num_steps must be a positive int"),
    "encode: num_steps 2.5": (lambda: gf.encode(DEC, X, method="euler", num_steps=2.5), "num_steps must be a positive int"),
    "encode: unknown amd option": (lambda: gf.encode(DEC, X, max_eval=3), "unknown solver option"),
    "flow_loss: alpha -1 (adjoint)": (lambda: gf.flow_loss(DEC, X, gradient="adjoint", method="rk4", alpha=-1.0),
                                      "alpha must be a finite number > 0"),
    "flow_loss: tau -1 (backprop)": (lambda: gf.flow_loss(DEC, X, gradient="backprop", method="rk4", tau=-1.0), "tau"),
    "flow_loss: order 3 (adjoint)": (lambda: gf.flow_loss(DEC, X, gradient="adjoint", method="rk4", order=3),
                                     "order must be 1 or 2"),
    "GradientFlow: alpha -1": (lambda: gf.GradientFlow(DEC, X, alpha=-1.0), "alpha must be a finite number > 0"),
    "SecondOrderFlow: alpha 0": (lambda: gf.SecondOrderFlow(DEC, X, alpha=0.0), "alpha must be a finite number > 0"),
    # shapes that used to broadcast
    "reconstruction_loss: (3,1) vs (3,6)": (lambda: gf.reconstruction_loss(torch.rand(3, 1), torch.rand(3, 6), "mse"),
                                            "same shape .no broadcasting"),
    "reconstruction_loss: bce (3,8) vs (1,8)": (lambda: gf.reconstruction_loss(torch.rand(3, 8), torch.rand(1, 8), "bce"),
                                                "same shape"),
    "reconstruction_loss: unknown loss": (lambda: gf.reconstruction_loss(X, X, "l1"), "loss must be 'mse', 'bce'"),
    "reconstruction_loss: callable returns a scalar": (lambda: gf.reconstruction_loss(X, X, lambda a, b: (a - b).sum()),
                                                       "one value per sample"),
    "cosine_similarity: sizes differ": (lambda: gf.cosine_similarity(torch.rand(4), torch.rand(5)), "same number of elements"),
    "cosine_similarity: empty": (lambda: gf.cosine_similarity(torch.rand(0), torch.rand(0)), "non-empty"),
    "cosine_similarity: not tensors": (lambda: gf.cosine_similarity([1.0], [1.0]), "must be non-empty tensors"),
    # data, model and experiment set-up
    "check_data: list": (lambda: gf.check_data([[0.1, 0.2]]), "must be a torch.Tensor"),
    "check_data: 3-D": (lambda: gf.check_data(torch.rand(2, 1, 8)), r"\(B, D\)"),
    "check_data: inf": (lambda: gf.check_data(torch.full((2, 8), float("inf")), "mse"), "NaN or inf"),
    "make_decoder: latent 0": (lambda: gf.make_decoder(0, 8), "latent_dim and out_dim must be >= 1"),
    "make_decoder: output": (lambda: gf.make_decoder(2, 8, output="tanh"), "output must be 'sigmoid' or 'linear'"),
    "make_encoder: in_dim 0": (lambda: gf.make_encoder(0, 2), "must be >= 1"),
    "latent_dim_of: no Linear": (lambda: gf.latent_dim_of(torch.nn.ReLU()), "cannot infer the latent size"),
    "initial_code: z0 shape": (lambda: gf.initial_code(3, 2, torch.zeros(2, 2)), r"z0 must have shape \(3, 2\)"),
    "initial_code: z0 nan": (lambda: gf.initial_code(1, 2, torch.full((1, 2), float("nan"))), "z0 contains NaN"),
    "AMDConfig: shrink 1": (lambda: gf.AMDConfig(shrink=1.0), "0 < shrink < 1"),
    "AMDConfig: max_evals 0": (lambda: gf.AMDConfig(max_evals=0), "max_evals >= 1"),
    "data_efficiency_curve: batch 0": (lambda: gf.data_efficiency_curve("GFE", X, X, [2], latent_dim=2, hidden=(4,), batch_size=0),
                                       "batch_size must be a positive int"),
    "data_efficiency_curve: seen too large": (lambda: gf.data_efficiency_curve("GFE", X, X, [30], latent_dim=2, hidden=(4,),
                                                                               batch_size=1), "seen must lie in"),
    "data_efficiency_curve: lr 0": (lambda: gf.data_efficiency_curve("AE", X, X, [2], latent_dim=2, hidden=(4,), batch_size=1,
                                                                     lr=0.0), "lr must be > 0"),
    "data_efficiency_curve: device gpu": (lambda: gf.data_efficiency_curve("AE", X, X, [2], latent_dim=2, hidden=(4,),
                                                                           batch_size=1, device="gpu", progress=False), "gpu"),
    "encode: tau 0": (lambda: gf.encode(DEC, X, method="euler", tau=0.0), r"tau .* must be a finite number > 0"),
    "make_gfe_step: batch is a string": (lambda: gf.make_gfe_step(DEC)("x"), "a batch must be a tensor"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_a_clear_error(name):
    call, message = CASES[name]
    with pytest.raises(ValueError, match=message):
        call()


def test_valid_edge_values_still_run():
    # numpy scalars are numbers too
    z, _ = gf.encode(DEC, X, method="euler", tau=np.float64(1.0), alpha=np.float32(0.5), num_steps=np.int64(2))
    assert torch.isfinite(z).all()


def test_case_count():
    assert len(CASES) >= 35
