"""The `aefast tour` command runs end to end and writes its report."""
import pytest

from aefast import cli
from aefast.apps.tour import run_tour


def test_tour_quick_writes_report(tmp_path):
    lines = []
    result = run_tour(out=str(tmp_path), quick=True, log=lines.append)
    report = (tmp_path / "report.md").read_text()
    assert "PCA and its neural versions" in report and "OjaPCA(block)" in report
    assert any("report written" in line for line in lines)
    angles = {name: angle for name, angle, _, _ in result["pca"]}
    assert angles["exact PCA"] == 0 and angles["OjaPCA(block)"] < 15
    assert 0 < result["autoencoder"]["ae_mse"] < 1
    assert all(0 < acc <= 1 for acc in result["features"].values())
    for title in ("Sparse codes", "Denoising", "Variational autoencoder", "Anomaly detection",
                  "Compression", "Augmentation", "Codes as features"):
        assert title in report
    topk_row = result["sparse"]["rows"][1]
    assert topk_row["l0"] <= 8 and 0 <= topk_row["dead"] < 1
    assert result["denoising"]["denoising"] < result["denoising"]["corrupted"]
    assert result["vae"]["log_likelihood"] > result["vae"]["elbo"] - 1
    assert result["anomaly"]["auroc"] > 0.8
    assert {p["method"] for p in result["compression"]["points"]} == {"autoencoder", "pca"}
    assert {"stacked autoencoder codes", "VAE posterior means"} <= set(result["features"])
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "Figures skipped" in report
    else:
        for name in ("reconstructions.png", "vae.png", "latent_and_training.png",
                     "rate_distortion.png"):
            assert (tmp_path / name).exists()


def test_cli_tour_and_missing_data(tmp_path, capsys):
    assert cli.main(["tour", "--quick", "--out", str(tmp_path)]) == 0
    assert cli.main(["tour", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    assert "choose digits" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["tour", "--bogus"])
