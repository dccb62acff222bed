"""`scarce bench render`: the plain pyrender anchor draws the very scenes scarce draws, and a brief run reports both."""

import numpy as np
import pytest

from scarce._errors import ScarceError
from scarce.bench.render import _in_fresh_process, main, render_samples
from scarce.render import get_preset

SIZE = (96, 96)
INDICES = list(range(6))


def test_plain_pyrender_renders_the_same_scenes_with_the_same_outputs():
    config = get_preset("synthetic-flat")
    plain = _in_fresh_process(render_samples, "plain", config, SIZE, INDICES)
    scarce = _in_fresh_process(render_samples, "scarce", config, SIZE, INDICES)
    for p, s in zip(plain, scarce):
        assert p.keys() == s.keys()
        for key in ("classes", "poses", "K"):  # the same sampled scene
            np.testing.assert_array_equal(p[key], s[key], err_msg=key)
        # The same objects on the same pixels: both id passes rasterise without multisampling (measured: identical
        # masks; another scene agrees on 63-91 % of the pixels).
        assert (p["semantic"] == s["semantic"]).mean() >= 0.999
        assert (p["instance"] == s["instance"]).mean() >= 0.999
        assert np.abs(p["boxes"] - s["boxes"]).max() <= 1
        both = (p["instance"] > 0) & (s["instance"] > 0)
        np.testing.assert_allclose(p["depth"][both], s["depth"][both], rtol=0.01)
        assert p["rgb"].shape == s["rgb"].shape == (*SIZE, 3)


def test_a_brief_run_reports_both_sides_and_their_ratio(capsys):
    assert main(["--size", "64", "64", "--workers", "1", "--frames", "8", "--chunk", "4", "--repeats", "2",
                 "--passes", "3"]) == 0
    out = capsys.readouterr().out
    plain = next(line for line in out.splitlines() if line.startswith("plain pyrender (PBR, MSAA 4"))
    scarce = next(line for line in out.splitlines() if line.startswith("scarce synthetic-flat, msaa 2"))
    for line in (plain, scarce):
        fps = float(line.split()[-4])  # frames/s median (range) CPU-ms median (range)
        assert fps > 0
    assert "x plain pyrender's frames/s per repeat" in out
    assert "colour pass" in out and "id pass" in out


@pytest.mark.parametrize("argv, message", [(["--frames", "0"], "--frames 0"),
                                           (["--preset", "no-such-preset"], "no-such-preset"),
                                           (["--preset", "photo-clutter"], "cannot draw this config's textures")])
def test_what_cannot_be_measured_is_one_error(argv, message):
    with pytest.raises(ScarceError, match=message):
        main(argv)
