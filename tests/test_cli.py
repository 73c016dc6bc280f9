import pytest

from mvcpaper.cli import main


def test_info_runs(capsys, tmp_path):
    assert main(["info", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_lite0" in out and "shipped" in out and "not found" in out


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "--preset", "smoke", "--datasets", "imagenet"], "unknown data set 'imagenet'"),
    (["reproduce", "--preset", "smoke", "--backbones", "alexnet"], "unknown backbone 'alexnet'"),
    (["reproduce", "--preset", "offline"], "no data root"),
    (["reproduce", "--preset", "paper", "--data-root", "."], "no ImageNet weights found for backbone 'vgg16'"),
])
def test_bad_inputs_exit_2_with_a_message(capsys, tmp_path, argv, message):
    assert main(argv + ["--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_offline_preset_with_empty_data_root(capsys, tmp_path):
    assert main(["reproduce", "--preset", "offline", "--data-root", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "no data set under the data root" in capsys.readouterr().err


def test_download_needs_a_name(capsys):
    assert main(["download"]) == 2
