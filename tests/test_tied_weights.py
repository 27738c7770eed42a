"""Tied weights (one parameter array used by several modules): the parameter is listed once and
its gradient is the sum of every use's gradient, everywhere gradients are collected (issue 11,
item 2)."""

from __future__ import annotations

import numpy as np
import pytest

from ferroptim import clip, train
from ferroptim.nn.container import Sequential
from ferroptim.nn.embedding import Embedding
from ferroptim.nn.linear import Linear
from ferroptim.nn.loss import CrossEntropyLoss
from ferroptim.optim import SGD

VOCAB, DIM = 7, 4


def _tied_model(seed: int = 0) -> Sequential:
    """Embedding -> Linear back to the vocabulary, the Linear's weight the Embedding's."""
    rng = np.random.default_rng(seed)
    emb = Embedding(VOCAB, DIM, dtype=np.float64)
    head = Linear(DIM, VOCAB, bias=False, dtype=np.float64)
    emb.weight[...] = rng.standard_normal(emb.weight.shape)
    head.weight = emb.weight
    return Sequential(emb, head)


def _untied_gradient_sum(model: Sequential, tokens: np.ndarray, dout: np.ndarray) -> np.ndarray:
    """The summed gradient, computed by hand from two untied copies of the layers."""
    emb = model[0]
    emb2 = Embedding(VOCAB, DIM, dtype=np.float64)
    head2 = Linear(DIM, VOCAB, bias=False, dtype=np.float64)
    emb2.weight[...] = emb.weight
    head2.weight[...] = emb.weight
    out = head2(emb2(tokens))
    assert out.shape == dout.shape
    emb2.backward(head2.backward(dout))
    return emb2.grad("weight") + head2.grad("weight")


def test_a_tied_parameter_is_listed_once_with_the_summed_gradient():
    model = _tied_model()
    tokens = np.array([0, 3, 3, 6, 1])
    dout = np.random.default_rng(1).standard_normal((5, VOCAB))
    want = _untied_gradient_sum(model, tokens, dout)
    for collect_first in (False, True):  # linked before or after the backward
        model.zero_grad()
        if collect_first:
            model.gradients()
        model(tokens)
        model.backward(dout)
        ((name, param),) = model.named_parameters()
        assert name == "0.weight" and param is model[0].weight
        (grad,) = model.gradients()
        np.testing.assert_allclose(grad, want, rtol=1e-12, atol=1e-12)
        assert model.num_parameters() == VOCAB * DIM


def test_the_summed_gradient_matches_finite_differences():
    model = _tied_model(2)
    tokens = np.array([1, 2, 5])
    weights = np.random.default_rng(3).standard_normal((3, VOCAB))

    def loss() -> float:
        return float(np.sum(model(tokens) * weights))

    model.zero_grad()
    model(tokens)
    model.backward(weights)
    (grad,) = model.gradients()
    w = model[0].weight
    numeric = np.zeros_like(w)
    for index in np.ndindex(w.shape):
        old = w[index]
        w[index] = old + 1e-6
        up = loss()
        w[index] = old - 1e-6
        down = loss()
        w[index] = old
        numeric[index] = (up - down) / 2e-6
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-7)


def test_fit_and_clipping_use_the_summed_gradient():
    """One fit step equals one SGD step on the hand-summed gradient; clipping sees it once."""
    model = _tied_model(4)
    tokens = np.array([0, 1, 2, 3, 4, 5])
    labels = np.array([1, 2, 3, 4, 5, 6])
    reference = _tied_model(4)
    loss_fn = CrossEntropyLoss()
    out = reference(tokens)
    loss_fn(out, labels)
    want_grad = _untied_gradient_sum(reference, tokens, loss_fn.backward())
    (grad,) = _after_backward(reference, tokens, labels)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-12)
    norm = clip.clip_grad_norm_(reference.gradients(), 1e9)  # counted once, not per use
    assert norm == pytest.approx(np.linalg.norm(want_grad.ravel()), rel=1e-12)
    opt = SGD(model.parameters(), lr=0.5)
    expected = model[0].weight - 0.5 * want_grad
    train.fit(model, loss_fn, opt, tokens, labels, batch_size=6, shuffle=False, progress=False)
    np.testing.assert_allclose(model[0].weight, expected, rtol=1e-12, atol=1e-12)
    assert model[1].weight is model[0].weight


def _after_backward(model, tokens, labels):
    loss_fn = CrossEntropyLoss()
    model.zero_grad()
    loss_fn(model(tokens), labels)
    model.backward(loss_fn.backward())
    return model.gradients()


def test_untying_gives_each_module_its_own_gradient_again():
    model = _tied_model()
    model.gradients()  # links the two uses
    model[1].weight = model[0].weight.copy()
    assert model[1].grad("weight") is not model[0].grad("weight")
    assert len(model.parameters()) == 2
