"""The compiled eval-mode forward: folded batchnorm and fused activations equal the unfused eval
path, nothing is kept for backward, plans follow changes to the model, outputs are the caller's,
and a backward after an eval forward still gives PyTorch's gradients."""
import numpy as np
import pytest

import fusetrain
from fusetrain import nn, optim
from fusetrain.nn import inference
from testutils import assert_close


def _trained(model, x, steps=2):
    """A few SGD steps in train mode so running statistics and weights are not the defaults."""
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(5)
    model.train()
    for _ in range(steps):
        y = model(x)
        opt.zero_grad()
        model.backward(rng.standard_normal(y.shape).astype(np.float32))
        opt.step()
    model.eval()
    return model


def _unfused_eval(model, x):
    """The layers' own forwards, one by one, in eval mode (no compiled plan, no fusion)."""
    with inference.replaying():
        return model(x).copy()


MODELS = {
    "conv-bn-relu": (lambda: nn.Sequential(nn.Conv2d(3, 10, 3, padding=1), nn.BatchNorm2d(10), nn.ReLU(),
                                           nn.MaxPool2d(2), nn.Flatten(), nn.Linear(10 * 4 * 4, 5)), (4, 3, 8, 8)),
    "linear-bn-act": (lambda: nn.Sequential(nn.Linear(7, 13), nn.BatchNorm1d(13), nn.Tanh(), nn.Dropout(0.3),
                                            nn.Linear(13, 11, bias=False), nn.BatchNorm1d(11, affine=False),
                                            nn.LeakyReLU(0.1), nn.Linear(11, 3), nn.Sigmoid()), (9, 7)),
    "conv1d-strided": (lambda: nn.Sequential(nn.Conv1d(2, 8, 5, stride=2, padding=1), nn.BatchNorm1d(8),
                                             nn.LeakyReLU(0.2), nn.Conv1d(8, 8, 3, stride=2, padding=1, groups=8),
                                             nn.ReLU(), nn.AvgPool1d(2), nn.Flatten(), nn.Linear(8 * 2, 4)),
                       (5, 2, 19)),
    "depthwise-separable": (lambda: nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.GlobalAvgPool2d(), nn.Linear(16, 3)),
        (3, 3, 9, 11)),
    "residual": (lambda: nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(),
        nn.Residual(nn.Sequential(nn.Conv2d(6, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                                  nn.Conv2d(6, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6))), nn.ReLU(),
        nn.Residual(nn.Sequential(nn.Conv2d(6, 12, 3, stride=2, padding=1), nn.BatchNorm2d(12)),
                    nn.Sequential(nn.Conv2d(6, 12, 1, stride=2), nn.BatchNorm2d(12))),
        nn.AdaptiveAvgPool2d((2, 1)), nn.Flatten(), nn.Linear(24, 4)), (3, 2, 7, 7)),
    "inception": (lambda: nn.Sequential(
        nn.Concat(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU()),
                  nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(3, 5, 1), nn.ReLU())),
        nn.LayerNorm((9, 6, 6)), nn.GlobalAvgPool2d(), nn.Linear(9, 2)), (2, 3, 6, 6)),
}


@pytest.mark.parametrize("name", MODELS)
def test_compiled_eval_equals_unfused_eval(name):
    build, shape = MODELS[name]
    fusetrain.manual_seed(1)
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    model = _trained(build(), x)
    ref = _unfused_eval(model, x)
    y = model(x)
    assert_close(y, ref, rtol=1e-5, atol=1e-5, name=f"{name} compiled vs unfused")
    assert_close(model(x), ref, rtol=1e-5, atol=1e-5, name=f"{name} second call (cached plan)")
    with fusetrain.backend.use_backend("numpy"):  # the float64-capable twins agree too
        assert_close(model(x), ref, rtol=1e-4, atol=1e-5, name=f"{name} numpy twins")


def test_fusion_happens_and_nothing_is_kept_for_backward():
    build, shape = MODELS["residual"]
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    model = _trained(build(), x)
    model(x)
    plan = next(iter(model._plans.values()))
    layers = sum(1 for m in model.modules() if not isinstance(m, (nn.Sequential, nn.Residual)))
    # conv+relu, conv+bn+relu, conv+bn, add+relu, conv+bn, conv+bn, add, pool, (flatten view), linear
    assert len(plan.steps) < layers - 4
    for m in model.modules():
        assert "_cache" not in m.__dict__, f"{type(m).__name__} kept a backward cache in eval mode"


def test_outputs_belong_to_the_caller():
    build, shape = MODELS["conv-bn-relu"]
    rng = np.random.default_rng(4)
    model = build().eval()
    x1, x2 = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    y1 = model(x1)
    keep = y1.copy()
    y2 = model(x2)
    assert not np.shares_memory(y1, y2)
    assert_close(y1, keep, rtol=0, atol=0, name="first output after a second call")


def test_plans_follow_changes_to_the_model():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    model = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2)).eval()
    y0 = model(x)
    # weights updated in place (an optimizer step, load_state_dict) are read by the next call
    sd = {k: v * 0.5 if k.endswith("weight") else v for k, v in model.state_dict().items()}
    model.load_state_dict(sd)
    assert_close(model(x), _unfused_eval(model, x), rtol=1e-5, atol=1e-6, name="after load_state_dict")
    assert not np.allclose(model(x), y0)
    # a replaced layer and changed hyper-parameters are seen
    model.append(nn.Sigmoid())
    assert_close(model(x), _unfused_eval(model, x), rtol=1e-5, atol=1e-6, name="after append")
    model[1].eps = 0.5
    assert_close(model(x), _unfused_eval(model, x), rtol=1e-5, atol=1e-6, name="after eps change")
    model.fuse = False
    assert_close(model(x), _unfused_eval(model, x), rtol=1e-5, atol=1e-6, name="unfused")
    # a train step changes running statistics; back in eval the plan uses them
    model.train()
    model(x)
    model.eval()
    assert_close(model(x), _unfused_eval(model, x), rtol=1e-5, atol=1e-6, name="after a train forward")


def test_backward_after_eval_forward_matches_torch():
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    fusetrain.manual_seed(7)
    build, shape = MODELS["residual"]
    x = np.random.default_rng(8).standard_normal(shape).astype(np.float32)
    ours = _trained(build(), x)

    class TRes(tnn.Module):
        def __init__(self, block, shortcut=None):
            super().__init__()
            self.block, self.shortcut = block, shortcut

        def forward(self, v):
            return self.block(v) + (self.shortcut(v) if self.shortcut is not None else v)

    theirs = tnn.Sequential(
        tnn.Conv2d(2, 6, 3, padding=1), tnn.ReLU(),
        TRes(tnn.Sequential(tnn.Conv2d(6, 6, 3, padding=1, bias=False), tnn.BatchNorm2d(6), tnn.ReLU(),
                            tnn.Conv2d(6, 6, 3, padding=1, bias=False), tnn.BatchNorm2d(6))), tnn.ReLU(),
        TRes(tnn.Sequential(tnn.Conv2d(6, 12, 3, stride=2, padding=1), tnn.BatchNorm2d(12)),
             tnn.Sequential(tnn.Conv2d(6, 12, 1, stride=2), tnn.BatchNorm2d(12))),
        tnn.AdaptiveAvgPool2d((2, 1)), tnn.Flatten(), tnn.Linear(24, 4))
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    theirs.eval()
    ours.zero_grad()
    xt = torch.from_numpy(x.copy()).requires_grad_()
    y, yt = ours(x), theirs(xt)
    assert_close(y, yt.detach().numpy(), rtol=1e-4, atol=1e-5, name="eval forward")
    g = np.random.default_rng(9).standard_normal(y.shape).astype(np.float32)
    gx = ours.backward(g)
    yt.backward(torch.from_numpy(g))
    assert_close(gx, xt.grad.numpy(), rtol=1e-4, atol=1e-5, name="input grad in eval mode")
    tp = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(p.grad, tp[name].grad.numpy(), rtol=1e-4, atol=1e-4, name=name)


def test_trainer_predict_and_evaluate_use_the_compiled_path():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((50, 6)).astype(np.float32)
    y = rng.integers(0, 3, 50)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    trainer = fusetrain.Trainer(model, optim.SGD(model.parameters(), lr=0.1))
    trainer.fit(x, y, epochs=2, batch_size=16, verbose=0)
    logits = trainer.predict(x)
    assert model.__dict__.get("_plans"), "predict did not compile an eval plan"
    assert_close(logits, _unfused_eval(model.eval(), x), rtol=1e-5, atol=1e-6, name="predict")
    ce = nn.CrossEntropyLoss()(logits, y)
    assert abs(trainer.evaluate(x, y)["loss"] - ce) < 1e-5


def test_training_steps_do_not_invalidate_compiled_plans():
    # Steps change values in place (weights, running statistics, num_batches_tracked += 1), not
    # the structure: the plans built for the step and for evaluation stay valid.
    rng = np.random.default_rng(11)
    x = rng.standard_normal((8, 5)).astype(np.float32)
    model = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.2), nn.Linear(6, 2))
    opt = optim.SGD(model.parameters(), lr=0.1)
    _trained(model, x)
    model.train()
    before = inference.version()
    for _ in range(3):
        model(x)
        opt.zero_grad()
        model.backward(np.ones((8, 2), np.float32))
        opt.step()
    assert inference.version() == before


def test_backward_after_an_eval_forward_uses_the_mode_of_that_forward():
    """eval forward, then train(), then backward: the gradients of the eval forward (as torch's
    graph gives), and the replay neither updates running statistics nor draws dropout masks."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    ours = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Dropout(0.5))
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Dropout(0.5))
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    ours[1].running_mean[...] = [0.5, -1.0, 2.0]
    theirs[1].running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
    ours.eval()
    theirs.eval()
    xt = torch.from_numpy(x.copy()).requires_grad_()
    y, yt = ours(x), theirs(xt)
    assert_close(y, yt.detach().numpy(), rtol=1e-5, atol=1e-6)
    ours.train()
    theirs.train()
    g = np.random.default_rng(1).normal(size=y.shape).astype(np.float32)
    gx = ours.backward(g)
    yt.backward(torch.from_numpy(g))
    assert_close(gx, xt.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert_close(ours[0].weight.grad, theirs[0].weight.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert np.array_equal(ours[1].running_mean, np.array([0.5, -1.0, 2.0], np.float32))
    assert int(ours[1].num_batches_tracked) == 0
    assert all(m.training for m in ours.modules())  # the mode the user set is kept


@pytest.mark.parametrize("wrap", ["alone", "in a Sequential"])
def test_a_weight_normed_layer_runs_in_eval_mode(wrap):
    rng = np.random.default_rng(2)
    lin = nn.utils.weight_norm(nn.Linear(3, 4))
    model = lin if wrap == "alone" else nn.Sequential(lin, nn.ReLU(), nn.Linear(4, 2))
    x = rng.normal(size=(5, 3)).astype(np.float32)
    expected = model(x).copy()  # no batchnorm or dropout: training mode computes the same function
    model.eval()
    assert_close(model(x), expected, rtol=1e-6, atol=1e-6)
    assert_close(model(x), expected, rtol=1e-6, atol=1e-6)
