"""`hgfast summary`: the per-block table and its totals."""
import subprocess
import sys

import pytest

from hgfast.cli import main
from hgfast.models import StackedHourglass
from hgfast.summary import summarize


def test_summary_totals_match_the_model():
    model = StackedHourglass(nstack=2, nfeat=32, njoints=4)
    rows = summarize(model, 64)
    assert [r.name for r in rows] == ["stem", "hourglass[0]", "head[0]", "merge[0]", "hourglass[1]", "head[1]"]
    assert sum(r.params for r in rows) == sum(p.numel() for p in model.parameters())
    assert rows[2].output_shape == (4, 16, 16)
    # stem conv7x7/2: 32*32 outputs x 64 channels x 3*7*7 taps
    assert rows[0].macs > 32 * 32 * 64 * 3 * 49


def test_eight_stack_macs_match_the_design_figure():
    total = sum(r.macs for r in summarize(StackedHourglass(nstack=8), 256))
    assert abs(total / 1e9 - 27.4) < 0.05


def test_summary_cli_prints_the_table(capsys):
    assert main(["summary", "--nstack", "1", "--nfeat", "32", "--input", "64"]) == 0
    out = capsys.readouterr().out
    assert "hourglass[0]" in out and "total" in out


def test_summary_cli_rejects_bad_input_size():
    proc = subprocess.run([sys.executable, "-m", "hgfast.cli", "summary", "--input", "100"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "multiples of 64" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "hgfast.cli", "summary", "--input", "256x"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "HEIGHTxWIDTH" in proc.stderr


def test_summary_cli_takes_a_non_square_input(capsys):
    assert main(["summary", "--nstack", "1", "--nfeat", "32", "--input", "128x64"]) == 0
    out = capsys.readouterr().out
    assert "input 128x64" in out and "(16, 32, 16)" in out


@pytest.mark.triton
def test_summary_of_a_fused_model_counts_the_same_and_restores_the_flag():
    """The fused forward bypasses the conv hooks, so summarize must run the model unfused."""
    from hgfast.fused import force_triton_on_cpu

    model = StackedHourglass(nstack=1, nfeat=16, njoints=2, fused=True)
    with force_triton_on_cpu():
        assert model.fused_active
        fused_macs = sum(r.macs for r in summarize(model, 64))
    assert fused_macs == sum(r.macs for r in summarize(StackedHourglass(nstack=1, nfeat=16, njoints=2), 64))
    assert model.fused is True


def test_summary_cli_takes_the_depth(capsys):
    """--depth 2 halves the input multiple to 16 and counts a smaller hourglass; depth 0 is refused by name."""
    assert main(["summary", "--nstack", "1", "--nfeat", "32", "--depth", "2", "--input", "48"]) == 0
    shallow = capsys.readouterr().out
    assert "depth=2" in shallow and "input 48x48" in shallow
    def hourglass_params(table: str) -> float:
        return float(next(line for line in table.splitlines() if line.startswith("hourglass[0]")).split()[-2])

    shallow_params = hourglass_params(shallow)
    assert main(["summary", "--nstack", "1", "--nfeat", "32", "--input", "64"]) == 0
    deep_params = hourglass_params(capsys.readouterr().out)
    assert shallow_params < deep_params
    with pytest.raises(SystemExit, match="depth must be a positive int"):
        main(["summary", "--depth", "0"])


def test_summary_cli_takes_bearpaws_stem_width(capsys):
    """--stem-channels 256: bearpaw's and anibali's wider stem, counted as the model builds it."""
    assert main(["summary", "--nstack", "1", "--nfeat", "32", "--stem-channels", "256", "--input", "64"]) == 0
    out = capsys.readouterr().out
    stem = next(line for line in out.splitlines() if line.startswith("stem"))
    want = StackedHourglass(nstack=1, nfeat=32, stem_channels=256).stem
    assert "stem_channels=256" in out and float(stem.split()[-2]) == round(sum(p.numel() for p in
                                                                               want.parameters()) / 1e6, 3)
