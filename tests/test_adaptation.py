"""scarce.adaptation: FDA, ADVENT's entropy maps and losses, CBST thresholds and pseudo-labels, against their
formulas on small hand-computed arrays."""

from __future__ import annotations

import doctest
import importlib
import math

import numpy as np
import pytest
import torch

import scarce.adaptation
from scarce.adaptation import (
    FDA,
    ConfidenceHistogram,
    class_balanced_thresholds,
    entropy_loss,
    entropy_map,
    fda_source_to_target,
    low_frequency_mask,
    pseudo_labels,
    self_information,
)


@pytest.mark.parametrize("name", ["fda", "entropy", "pseudo_labels"])
def test_docstring_examples(name):
    # By name: the package attribute `pseudo_labels` is the function, which shadows its module.
    module = importlib.import_module(f"scarce.adaptation.{name}")
    result = doctest.testmod(module, extraglobs={"torch": torch}, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_public_names():
    assert sorted(scarce.adaptation.__all__) == sorted(
        ["FDA", "ConfidenceHistogram", "class_balanced_thresholds", "entropy_loss", "entropy_map",
         "fda_source_to_target", "low_frequency_mask", "pseudo_labels", "self_information"])


# ---------------------------------------------------------------------------------------------------- FDA


def test_fda_by_hand_on_2x2():
    """beta=0.5 on 2x2: b=1, every frequency swapped. Source [[0,1],[0,0]] has the spectrum [[1,-1],[1,-1]]
    (phases 0 and pi), target [[1,0],[0,1]] the amplitudes [[2,0],[0,2]]; amplitude 2 at (0,0) with phase 0 and
    at (1,1) with phase pi give [[2,0],[0,-2]], whose inverse is [[0,1],[1,0]]."""
    source = torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]], dtype=torch.float64)
    target = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]], dtype=torch.float64)
    out = fda_source_to_target(source, target, beta=0.5, clamp=False)
    torch.testing.assert_close(out, torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]], dtype=torch.float64))


def test_fda_matches_a_numpy_corner_swap_on_8x6():
    """b = floor(min(8, 6) * 0.34) = 2: rows 0, 1, 6, 7 x columns 0, 1, 4, 5 of the un-shifted spectrum."""
    rng = np.random.default_rng(0)
    source, target = rng.random((1, 1, 8, 6)), rng.random((1, 1, 8, 6))
    spectrum_s, spectrum_t = np.fft.fft2(source), np.fft.fft2(target)
    amplitude = np.abs(spectrum_s)
    for rows in (slice(0, 2), slice(6, 8)):
        for cols in (slice(0, 2), slice(4, 6)):
            amplitude[..., rows, cols] = np.abs(spectrum_t[..., rows, cols])
    expected = np.real(np.fft.ifft2(amplitude * np.exp(1j * np.angle(spectrum_s))))

    out = fda_source_to_target(torch.from_numpy(source), torch.from_numpy(target), beta=0.34, clamp=False)
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-12)
    assert not np.allclose(expected, source)  # the swap did something


def test_low_frequency_mask_is_the_four_corner_blocks():
    mask = low_frequency_mask(5, 7, 0.45)  # b = floor(5 * 0.45) = 2
    expected = torch.zeros(5, 7, dtype=torch.bool)
    for r in (0, 1, 3, 4):
        for c in (0, 1, 5, 6):
            expected[r, c] = True
    assert torch.equal(mask, expected)
    assert not low_frequency_mask(8, 6, 0.1).any()  # b = floor(0.6) = 0
    assert low_frequency_mask(6, 6, 0.5).all()  # b = 3: the whole spectrum


@pytest.mark.parametrize("beta", [0.0, 0.1])  # 0.1 * 6 = 0.6: b = 0 as well
def test_fda_beta_zero_is_the_identity(beta):
    source, target = torch.rand(2, 3, 8, 6), torch.rand(2, 3, 8, 6)
    torch.testing.assert_close(fda_source_to_target(source, target, beta), source, rtol=0, atol=1e-6)


@pytest.mark.parametrize("size", [(9, 7), (8, 6), (6, 11), (10, 10)])
def test_fda_keeps_source_phase_and_takes_target_low_amplitude(size):
    """Wherever the window is symmetric (frequency (u, v) and (-u, -v) both in it or both out of it), the
    result's spectrum is exactly the target's amplitude inside, the source's outside, with the source's phase.
    (The window's edge row/column -b has no partner +b; there the real part mixes the two.)"""
    torch.manual_seed(0)
    source, target = torch.rand(2, 3, *size, dtype=torch.float64), torch.rand(2, 3, *size, dtype=torch.float64)
    beta = 0.3
    out = fda_source_to_target(source, target, beta, clamp=False)
    spectrum_out, spectrum_s, spectrum_t = (torch.fft.fft2(x) for x in (out, source, target))
    mask = low_frequency_mask(*size, beta)
    assert mask.any()
    mirrored = torch.roll(mask.flip(0, 1), shifts=(1, 1), dims=(0, 1))  # mirrored[u, v] = mask[-u, -v]
    inside, outside = mask & mirrored, ~mask & ~mirrored
    assert inside.any() and outside.any()
    torch.testing.assert_close(spectrum_out.abs()[..., inside], spectrum_t.abs()[..., inside])
    torch.testing.assert_close(spectrum_out.abs()[..., outside], spectrum_s.abs()[..., outside])
    symmetric = inside | outside
    unit_out = spectrum_out[..., symmetric] / spectrum_out[..., symmetric].abs()
    unit_s = spectrum_s[..., symmetric] / spectrum_s[..., symmetric].abs()
    torch.testing.assert_close(unit_out, unit_s)  # the same phase, without wrapping angles


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_fda_keeps_shape_and_dtype(dtype):
    source, target = torch.rand(3, 3, 7, 5).to(dtype), torch.rand(3, 3, 7, 5).to(dtype)
    out = fda_source_to_target(source, target, 0.3)
    assert out.shape == source.shape and out.dtype == dtype
    reference = fda_source_to_target(source.float(), target.float(), 0.3)
    if dtype == torch.float64:  # computed in float64
        torch.testing.assert_close(out.float(), reference, rtol=0, atol=1e-6)
    else:  # computed in float32, then rounded
        torch.testing.assert_close(out, reference.to(dtype), rtol=0, atol=0)


def test_fda_clamp_and_a_single_target():
    source = torch.rand(2, 1, 8, 8)
    target = torch.full((1, 1, 8, 8), 0.95)
    raw = fda_source_to_target(source, target, 0.25, clamp=False)
    assert raw.max() > 1.0 or raw.min() < 0.0  # the bright target's DC term pushes pixels out of range
    torch.testing.assert_close(fda_source_to_target(source, target, 0.25), raw.clamp(0, 1))
    # One target image serves the whole batch.
    torch.testing.assert_close(raw, fda_source_to_target(source, target.expand(2, -1, -1, -1), 0.25, clamp=False))


def test_fda_errors_name_the_problem():
    with pytest.raises(ValueError, match="beta must be in"):
        fda_source_to_target(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4), 0.6)
    with pytest.raises(ValueError, match="same size"):
        fda_source_to_target(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 5), 0.1)
    with pytest.raises(ValueError, match="one target image per source image or a single one"):
        fda_source_to_target(torch.rand(3, 1, 4, 4), torch.rand(2, 1, 4, 4), 0.1)
    with pytest.raises(TypeError, match="float images"):
        fda_source_to_target(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), torch.rand(1, 1, 4, 4), 0.1)
    with pytest.raises(ValueError, match="beta must be in"):
        FDA(-0.1)
    with pytest.raises(KeyError, match="paired batch"):
        FDA(0.1)({"image": torch.rand(1, 1, 4, 4)})


def _paired_batch(b_source=4, b_target=3):
    return {
        "source": {"image": torch.rand(b_source, 3, 8, 6), "mask": torch.randint(0, 3, (b_source, 8, 6))},
        "target": {"image": torch.rand(b_target, 3, 8, 6)},
        "step": 7,
    }


def test_fda_module_pairs_with_seeded_random_targets():
    batch = _paired_batch()
    source_before, target_before = batch["source"]["image"].clone(), batch["target"]["image"].clone()
    out = FDA(0.25, generator=torch.Generator().manual_seed(123))(batch)

    index = torch.randint(3, (4,), generator=torch.Generator().manual_seed(123))
    expected = fda_source_to_target(source_before, target_before[index], 0.25)
    torch.testing.assert_close(out["source"]["image"], expected)
    # Everything else passes through; the input batch is untouched.
    assert out["source"]["mask"] is batch["source"]["mask"] and out["target"] is batch["target"] and out["step"] == 7
    assert torch.equal(batch["source"]["image"], source_before) and out is not batch
    # Same seed, same pairing; the generator advances between calls.
    again = FDA(0.25, generator=torch.Generator().manual_seed(123))(batch)
    assert torch.equal(again["source"]["image"], out["source"]["image"])
    assert "beta=0.25" in repr(FDA(0.25))


def test_fda_module_with_one_target_and_the_global_generator():
    batch = _paired_batch(b_source=5, b_target=1)
    out = FDA(0.25)(batch)
    expected = fda_source_to_target(batch["source"]["image"], batch["target"]["image"], 0.25)
    torch.testing.assert_close(out["source"]["image"], expected)


# -------------------------------------------------------------------------------------------------- ADVENT


def test_entropy_by_hand():
    """P = (1/2, 1/4, 1/4): -P ln P = (ln2/2, ln2/2, ln2/2); E = 1.5 ln2 / ln3 (1.5 bits over log2(3))."""
    logits = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64).log().view(1, 3, 1, 1)
    half_ln2 = math.log(2) / 2
    torch.testing.assert_close(self_information(logits, normalized=False).flatten(),
                               torch.full((3,), half_ln2, dtype=torch.float64))
    torch.testing.assert_close(self_information(logits).flatten(),
                               torch.full((3,), half_ln2 / math.log(3), dtype=torch.float64))
    torch.testing.assert_close(entropy_map(logits), torch.full((1, 1, 1), 1.5 / math.log2(3), dtype=torch.float64))
    torch.testing.assert_close(entropy_loss(logits), torch.tensor(1.5 / math.log2(3), dtype=torch.float64))


def test_entropy_matches_the_formula_and_the_official_loss():
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=3.0, size=(2, 5, 3, 4))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    information = -p * np.log(p)
    # ADVENT's prob_2_entropy and entropy_loss: log2, divided by log2(C), the loss averaged over N * H * W.
    official_map = -p * np.log2(p + 1e-30) / np.log2(5)
    official_loss = -np.sum(p * np.log2(p + 1e-30)) / (2 * 3 * 4 * np.log2(5))

    t = torch.from_numpy(logits)
    np.testing.assert_allclose(self_information(t, normalized=False).numpy(), information, rtol=1e-12)
    np.testing.assert_allclose(self_information(t).numpy(), official_map, rtol=1e-10)
    np.testing.assert_allclose(entropy_map(t).numpy(), information.sum(1) / np.log(5), rtol=1e-12)
    np.testing.assert_allclose(entropy_loss(t).item(), official_loss, rtol=1e-10)
    torch.testing.assert_close(self_information(t).sum(1), entropy_map(t))


def test_entropy_extremes():
    uniform = torch.full((2, 7, 3, 3), 0.3)
    torch.testing.assert_close(entropy_map(uniform), torch.ones(2, 3, 3))
    torch.testing.assert_close(entropy_loss(uniform), torch.tensor(1.0))
    one_hot_like = torch.zeros(2, 7, 3, 3)
    one_hot_like[:, 2] = 50.0
    assert entropy_map(one_hot_like).max() < 1e-12
    entropy = entropy_map(torch.randn(4, 7, 5, 5) * 4)
    assert ((entropy >= 0) & (entropy <= 1)).all()


def test_entropy_gradients_flow_and_match_finite_differences():
    logits = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(entropy_loss, (logits,))
    assert torch.autograd.gradcheck(lambda x: self_information(x), (logits,))
    leaf = logits.detach().float().requires_grad_()
    loss = entropy_loss(leaf)
    loss.backward()
    assert loss.dtype == torch.float32 and leaf.grad is not None and leaf.grad.abs().sum() > 0


@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_entropy_is_stable_for_large_and_infinite_logits(scale):
    logits = torch.zeros(1, 3, 2, 2)
    logits[:, 0] = scale
    logits[:, 1, 0, 0] = float("-inf")  # a masked class
    logits.requires_grad_()
    for value in (self_information(logits).sum(), entropy_map(logits).sum(), entropy_loss(logits)):
        assert torch.isfinite(value)
        (grad,) = torch.autograd.grad(value, logits)
        assert torch.isfinite(grad).all()
    if scale > 0:
        assert entropy_loss(logits).item() == 0.0
    else:  # class 0 is impossible: pixel (0, 0) is certain of class 2, the others split classes 1 and 2
        torch.testing.assert_close(entropy_map(logits), torch.tensor([[[0.0, math.log(2) / math.log(3)],
                                                                       [math.log(2) / math.log(3)] * 2]]))


def test_entropy_bfloat16():
    logits = torch.randn(2, 5, 4, 4)
    low = logits.bfloat16()
    assert self_information(low).dtype == torch.bfloat16 and entropy_map(low).dtype == torch.bfloat16
    torch.testing.assert_close(entropy_map(low).float(), entropy_map(low.float()), rtol=0, atol=1e-2)
    loss = entropy_loss(low)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, entropy_loss(low.float()))  # the same float32 computation


def test_entropy_loss_ignore_mask():
    logits = torch.randn(2, 4, 3, 5, dtype=torch.float64)
    ignore = torch.rand(2, 3, 5) < 0.4
    torch.testing.assert_close(entropy_loss(logits, ignore), entropy_map(logits)[~ignore].mean())
    torch.testing.assert_close(entropy_loss(logits, torch.zeros(2, 3, 5, dtype=torch.bool)), entropy_loss(logits))
    leaf = logits.clone().requires_grad_()
    everything = entropy_loss(leaf, torch.ones(2, 3, 5, dtype=torch.bool))
    everything.backward()
    assert everything.item() == 0.0 and torch.equal(leaf.grad, torch.zeros_like(leaf))
    with pytest.raises(ValueError, match="ignore_mask must have the shape"):
        entropy_loss(logits, torch.zeros(2, 4, 3, 5, dtype=torch.bool))


def test_entropy_needs_two_classes():
    with pytest.raises(ValueError, match="at least 2 classes"):
        entropy_map(torch.zeros(1, 1, 2, 2))


# ---------------------------------------------------------------------------------------------------- CBST

# Confidences sorted within each class; 255 marks a pixel to leave out.
CONFIDENCES = torch.tensor([0.9, 0.5, 0.7, 0.6, 0.8, 0.65, 0.95, 0.55, 0.99, 0.3])
PREDICTIONS = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 3, 255])


@pytest.mark.parametrize(
    ("portion", "expected"),
    [
        # class 0: 0.9 0.8 0.7 0.6 0.5; class 1: 0.95 0.65 0.55; class 2: never predicted; class 3: 0.99.
        (0.4, [0.8, 0.95, math.inf, math.inf]),  # floor(5 * .4) = 2 -> 2nd largest; floor(1.2) = 1; floor(.4) = 0
        (0.7, [0.7, 0.65, math.inf, math.inf]),  # floor(3.5) = 3 -> 3rd largest; floor(2.1) = 2; floor(.7) = 0
        (1.0, [0.5, 0.55, math.inf, 0.99]),  # every pixel kept: the smallest confidence of each class
        (0.0, [math.inf] * 4),  # nothing kept
    ],
)
def test_thresholds_by_hand(portion, expected):
    thresholds = class_balanced_thresholds(CONFIDENCES, PREDICTIONS, 4, portion=portion)
    assert thresholds.dtype == torch.float32 and thresholds.shape == (4,)
    torch.testing.assert_close(thresholds, torch.tensor(expected))


def test_thresholds_from_probabilities():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]]).T.reshape(1, 3, 2, 2)
    # Pixels: class 0 with 0.7 and 0.5; class 1 with 0.6; class 2 with 0.6.
    torch.testing.assert_close(class_balanced_thresholds(probs, portion=1.0), torch.tensor([0.5, 0.6, 0.6]))
    torch.testing.assert_close(class_balanced_thresholds(probs, portion=0.5), torch.tensor([0.7, math.inf, math.inf]))
    with pytest.raises(ValueError, match="classes along dimension 1"):
        class_balanced_thresholds(probs, num_classes=4, portion=0.5)


def test_thresholds_cap():
    thresholds = class_balanced_thresholds(CONFIDENCES, PREDICTIONS, 4, portion=1.0, max_threshold=0.9)
    torch.testing.assert_close(thresholds, torch.tensor([0.5, 0.55, math.inf, 0.9]))
    assert class_balanced_thresholds(CONFIDENCES, PREDICTIONS, 4, portion=0.0, max_threshold=0.9).isinf().all()


def test_threshold_errors():
    with pytest.raises(ValueError, match="portion must be in"):
        class_balanced_thresholds(CONFIDENCES, PREDICTIONS, 4, portion=1.5)
    with pytest.raises(ValueError, match="max_threshold must be in"):
        class_balanced_thresholds(CONFIDENCES, PREDICTIONS, 4, portion=0.5, max_threshold=0.0)
    with pytest.raises(ValueError, match="pass num_classes"):
        class_balanced_thresholds(CONFIDENCES, PREDICTIONS, portion=0.5)
    with pytest.raises(ValueError, match="same shape"):
        class_balanced_thresholds(CONFIDENCES, PREDICTIONS[:3], 4, portion=0.5)


def _random_probs(seed, shape=(4, 5, 16, 16), scale=3.0):
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(shape, generator=generator) * scale, dim=1)


@pytest.mark.parametrize("portion", [0.0, 0.05, 0.2, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("bins", [10, 100, 1000])
def test_histogram_within_one_bin_of_exact(portion, bins):
    probs = _random_probs(0)
    probs[:, 4] = 0.0  # class 4 is never predicted
    probs = probs / probs.sum(1, keepdim=True)
    histogram = ConfidenceHistogram(5, bins=bins)
    for chunk in probs.split(1):  # streamed, one image at a time
        histogram.update(chunk)
    assert int(histogram.counts.sum()) == 4 * 16 * 16
    exact = class_balanced_thresholds(probs, portion=portion)
    approximate = histogram.thresholds(portion)
    assert torch.equal(exact.isinf(), approximate.isinf()) and exact[4].isinf()
    finite = exact.isfinite()
    gap = exact[finite].double() - approximate[finite].double()
    assert (gap >= -1e-6).all() and (gap < 1.0 / bins + 1e-6).all(), gap  # lower edge of the exact value's bin


def test_histogram_with_predictions_merge_reset_and_saturated_confidences():
    histogram = ConfidenceHistogram(4, bins=10)
    histogram.update(CONFIDENCES, PREDICTIONS)  # 255 is left out
    assert histogram.counts.sum(1).tolist() == [5, 3, 0, 1]
    torch.testing.assert_close(histogram.thresholds(1.0), torch.tensor([0.5, 0.5, math.inf, 0.9]))
    torch.testing.assert_close(histogram.thresholds(0.4, max_threshold=0.85), torch.tensor([0.8, 0.85, math.inf,
                                                                                             math.inf]))
    other = ConfidenceHistogram(4, bins=10)
    other.update(torch.tensor([1.0, 0.0]), torch.tensor([2, 2]))  # 1.0 in the last bin, 0.0 in the first
    histogram += other
    assert histogram.counts[2, 9] == 1 and histogram.counts[2, 0] == 1 and "pixels=11" in repr(histogram)
    torch.testing.assert_close(histogram.thresholds(0.5)[2], torch.tensor(0.9))
    histogram.reset()
    assert histogram.counts.sum() == 0 and histogram.thresholds(0.5).isinf().all()
    with pytest.raises(ValueError, match="Cannot merge"):
        histogram += ConfidenceHistogram(4, bins=20)


def test_pseudo_labels_argmax_rule_ignores_below_threshold():
    logits = torch.randn(3, 4, 6, 5) * 2
    thresholds = torch.tensor([0.5, 0.6, math.inf, 0.3])
    labels = pseudo_labels(logits, thresholds, ignore_index=255, rule="argmax")
    assert labels.shape == (3, 6, 5) and labels.dtype == torch.int64
    confidence, argmax = torch.softmax(logits, 1).max(1)
    below = confidence < thresholds[argmax]
    assert below.any() and (~below).any()
    assert (labels[below] == 255).all()
    assert torch.equal(labels[~below], argmax[~below])
    assert not (labels == 2).any()  # inf turns class 2 off


def test_pseudo_labels_cbst_rule():
    logits = torch.randn(3, 4, 6, 5) * 2
    thresholds = torch.tensor([0.8, 0.2, 0.5, math.inf])
    labels = pseudo_labels(logits, thresholds, ignore_index=-1)
    probs = torch.softmax(logits, 1)
    passes = probs >= thresholds.view(1, 4, 1, 1)
    ignored = ~passes.any(1)  # ignored exactly where no class reaches its threshold
    assert ignored.any() and torch.equal(labels == -1, ignored)
    assert torch.equal(labels[~ignored], (probs / thresholds.view(1, 4, 1, 1)).argmax(1)[~ignored])
    kept = labels[~ignored]
    assert (probs.permute(0, 2, 3, 1)[~ignored].gather(1, kept[:, None]).squeeze(1) >= thresholds[kept]).all()
    # The rule picks a rarer class than the argmax when it clears its (lower) threshold by more.
    two = torch.tensor([0.75, 0.25]).log().view(1, 2, 1, 1)
    assert pseudo_labels(two, torch.tensor([0.9, 0.2])).item() == 1
    assert pseudo_labels(two, torch.tensor([0.9, 0.2]), rule="argmax").item() == 255


@pytest.mark.parametrize("rule", ["cbst", "argmax"])
def test_portion_zero_ignores_everything_even_saturated_pixels(rule):
    logits = torch.zeros(2, 3, 4, 4)
    logits[:, 1] = 100.0  # softmax is exactly 1.0 in float32
    assert (torch.softmax(logits, 1).max(1).values == 1.0).all()
    thresholds = class_balanced_thresholds(torch.softmax(logits, 1), portion=0.0)
    assert (pseudo_labels(logits, thresholds, rule=rule) == 255).all()
    assert (pseudo_labels(logits, class_balanced_thresholds(torch.softmax(logits, 1), portion=1.0), rule=rule)
            == 1).all()


def test_thresholds_keep_the_top_portion_of_each_class():
    """Exact thresholds and the argmax rule keep exactly floor(p * N_c) pixels of each class (no ties here)."""
    logits = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(3)) * 3
    probs = torch.softmax(logits, 1)
    predictions = probs.argmax(1)
    labels = pseudo_labels(logits, class_balanced_thresholds(probs, portion=0.3), rule="argmax")
    for c in range(4):
        assert int((labels == c).sum()) == math.floor(int((predictions == c).sum()) * 0.3)


def test_pseudo_label_errors():
    logits = torch.randn(1, 3, 2, 2)
    with pytest.raises(ValueError, match="one value per class"):
        pseudo_labels(logits, torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="must be positive"):
        pseudo_labels(logits, torch.tensor([0.5, 0.0, 0.5]))
    with pytest.raises(ValueError, match="Unknown value 'max' for argument rule"):
        pseudo_labels(logits, torch.tensor([0.5, 0.5, 0.5]), rule="max")
