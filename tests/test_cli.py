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


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("mvcpaper: error: "), err
    return lines[0]


def test_a_named_data_set_is_checked_before_any_notebook(capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["reproduce", "--preset", "offline", "--data-root", str(empty), "--datasets", "coil100",
            "--notebooks", "01_datasets", "--out", str(tmp_path)]
    assert main(argv) == 2
    line = _one_line(capsys.readouterr().err)
    assert "data set 'coil100' not found" in line and "mvcpaper download coil100" in line
    assert not (tmp_path / "runs").exists()


def test_a_broken_data_set_is_read_before_any_notebook(capsys, tmp_path, labelled_folder):
    import shutil

    src, _ = labelled_folder
    shutil.copytree(src, tmp_path / "data" / "umist")
    (tmp_path / "data" / "umist" / "labels.txt").write_text("0\n1\n")  # 2 labels for 12 images
    argv = ["reproduce", "--preset", "offline", "--data-root", str(tmp_path / "data"), "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "2 labels but" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()


def test_failed_download_is_one_line_and_leaves_nothing(capsys, tmp_path, monkeypatch):
    import dataclasses

    import mvcpaper.data as data

    res = data.Resource((tmp_path / "offline" / "umist_cropped.mat").as_uri(), "umist_cropped.mat", None)
    monkeypatch.setitem(data.DATASETS, "umist", dataclasses.replace(data.DATASETS["umist"], resources=(res,)))
    root = tmp_path / "data"
    root.mkdir()
    assert main(["download", "umist", "--data-root", str(root)]) == 2
    assert "cannot download" in _one_line(capsys.readouterr().err)
    assert list(root.iterdir()) == []


def test_unknown_notebook_and_unknown_layer_names(capsys, tmp_path):
    assert main(["reproduce", "--preset", "smoke", "--notebooks", "09_nope", "--out", str(tmp_path)]) == 2
    assert "unknown notebook '09_nope'" in _one_line(capsys.readouterr().err)


def test_a_notebook_stopped_by_a_user_error_is_one_line(tmp_path):
    import nbformat

    from mvcpaper.errors import MvcpaperError
    from mvcpaper.reproduce import reproduce

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("preset = None")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "from mvcpaper.data import DatasetError\nraise DatasetError('labels.txt, line 3: empty line')")]
    (tmp_path / "nbs").mkdir()
    nbformat.write(nb, tmp_path / "nbs" / "01_datasets.ipynb")
    with pytest.raises(MvcpaperError, match=r"notebook 01_datasets stopped: DatasetError: labels.txt, line 3.*"
                                            r"01_datasets\.ipynb"):
        reproduce("smoke", out_dir=tmp_path, notebooks=["01_datasets"], notebooks_path=tmp_path / "nbs",
                  cache_dir=tmp_path / "cache", log=lambda *_: None)


@pytest.mark.slow
def test_ctrl_c_stops_reproduce_with_one_line(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "mvcpaper.cli", "reproduce", "--preset", "smoke", "--quiet",
                             "--out", str(tmp_path), "--cache-dir", str(tmp_path / "cache")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            # as from a terminal: a runner started in the background ignores SIGINT,
                            # and its children would inherit that
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stdout:  # the first notebook has started: stop it in the middle, as Ctrl-C does
        if "[01_datasets] running" in line:
            break
    time.sleep(2)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert [ln for ln in err.splitlines() if ln.strip()] == [
        "mvcpaper: interrupted; finished work is cached, run the same command again to resume"]
