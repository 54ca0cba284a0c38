"""The label-noise ceiling (autorad.evaluate.ceiling) and its results-page section (docs/scripts/make_ceiling.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from autorad import CLASS_NAMES
from autorad.core.errors import InputError
from autorad.evaluate import ceiling as C

B, U, M = (CLASS_NAMES.index(c) for c in ("benign", "unsure", "malignant"))
SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "scripts" / "make_ceiling.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("make_ceiling", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ------------------------------------------------------------------------------------------- panels and rule

def test_panel_labels_follow_the_label_rule_with_half_medians() -> None:
    panels = [[2, 3], [3, 4], [3, 3], [1, 5], [2, 2, 3, 3], [3, 3, 4, 4], [2, 3, 3, 4]]
    labels = [int(C.panel_labels(np.array([p]))[0]) for p in panels]
    assert labels == [B, M, U, U, B, M, U]


def test_rated_packs_readers_in_any_slot_and_median_labels_use_all_readers() -> None:
    malig = np.array([[0, 4, 5, 3], [2, 0, 0, 0], [2, 3, 0, 0], [1, 1, 5, 5]])
    rows, packed = C.rated(malig, 3)
    assert rows.tolist() == [0] and packed.tolist() == [[4, 5, 3]]
    assert C.reader_count(malig).tolist() == [3, 1, 2, 4]
    assert C.median_labels(malig).tolist() == [M, B, B, U]


def test_leave_one_out_median_of_each_three_reader_panel() -> None:
    r = np.array([[1, 2, 4, 5]])  # all 4: median 3 (unsure); without reader j: [2,4,5] [1,4,5] [1,2,5] [1,2,4]
    assert C.leave_one_out_labels(r).tolist() == [[M, M, B, B]]
    assert C.panel_labels(r).tolist() == [U]
    assert C.reader_votes(r).tolist() == [[B, B, M, M]]
    with pytest.raises(ValueError):
        C.leave_one_out_labels(np.array([[3]]))


def test_agreement_is_one_when_all_readers_agree() -> None:
    r = np.array([[1, 1, 1, 1], [3, 3, 3, 3], [5, 5, 5, 5], [4, 4, 4, 4]])
    full = C.panel_labels(r)
    assert (C.leave_one_out_labels(r) == full[:, None]).all()
    assert (C.reader_votes(r) == full[:, None]).all()
    assert C.split_half_agreement(r).tolist() == [1.0] * 4
    probs = C.resampled_label_probs(r, 4)
    assert np.allclose(probs.max(axis=1), 1) and (C.bayes_class(probs) == full).all()
    s = C.scores(np.repeat(full, 4), C.leave_one_out_labels(r).ravel())
    assert s["accuracy"] == 1.0 and s["unsure_f1"] == 1.0


def test_disagreeing_readers_lower_the_agreement() -> None:
    r = np.array([[1, 2, 4, 5], [2, 2, 4, 4]])
    assert (C.leave_one_out_labels(r) == C.panel_labels(r)[:, None]).mean() == 0
    # [2,2,4,4]: pairs (2,2)/(4,4) disagree, (2,4)/(2,4) agree twice
    assert C.split_half_agreement(r)[1] == pytest.approx(2 / 3)


# ------------------------------------------------------------------------------------------------ estimators

def test_resampled_label_probs_exact_on_known_cases() -> None:
    # 4 draws from {2,2,4,4}: median 3 iff two 2s and two 4s (6/16); benign iff at least three 2s (5/16)
    assert np.allclose(C.resampled_label_probs(np.array([[2, 2, 4, 4]]), 4), [[5 / 16, 6 / 16, 5 / 16]])
    # 3 draws from {2,4}: the median is the majority value, never 3
    assert np.allclose(C.resampled_label_probs(np.array([[2, 4]]), 3), [[0.5, 0.0, 0.5]])
    # 1 draw from {1,3,5}: each class a third
    assert np.allclose(C.resampled_label_probs(np.array([[1, 3, 5]]), 1), [[1 / 3] * 3])
    loo = C.leave_one_out_probs(np.array([[2, 2, 2, 5]]))
    # without reader 0: 4 draws from {2,2,5}; benign iff at least three 2s (48/81), else the median is 3.5 or 5
    assert loo.shape == (1, 4, 3) and np.allclose(loo[0, 0], [48 / 81, 0, 33 / 81])
    assert loo[0, 3, B] == 1.0


def _simulate(rng: np.random.Generator, mus: np.ndarray, sigma: float, n_readers: int) -> np.ndarray:
    scores = mus[:, None] + sigma * rng.standard_normal((len(mus), n_readers))
    return 1 + np.searchsorted(C.THRESHOLDS, scores)


def test_latent_model_recovers_a_known_ceiling_and_shows_the_plugin_is_optimistic() -> None:
    rng = np.random.default_rng(0)
    mus = rng.choice([1.2, 2.6, 3.0, 3.4, 4.6], size=900)
    sigma = 0.6
    malig = _simulate(rng, mus, sigma, 4)
    model = C.fit_latent(malig, iters=300)
    assert model["sigma"] == pytest.approx(sigma, abs=0.08)
    # the known answer: the perfect model (knows mu) has expected accuracy mean max q(mu)
    q = C.latent_label_probs(C.rating_probs(mus, sigma), 4)
    truth = q.max(axis=1).mean()
    n = C.reader_count(malig)
    est = C.latent_expected(model, C.median_labels(malig), n)
    assert est["max_prob"].mean() == pytest.approx(truth, abs=0.03)
    assert est["correct"].mean() == pytest.approx(truth, abs=0.05)
    g = C.latent_functionals(model, C.median_labels(malig), n)
    lo, hi = C.identified_range(model, g["max_prob"])
    assert lo - 1e-6 <= est["max_prob"].mean() <= hi + 1e-6 and lo <= truth + 0.03 and hi >= truth - 0.03
    lo, hi = C.identified_range(model, np.full_like(g["max_prob"], 0.25), rel_tol=0.01)
    assert lo == pytest.approx(0.25 / 1.01, abs=1e-3) and hi == pytest.approx(0.25 / 0.99, abs=1e-3)
    check = C.plugin_check(model, np.arange(len(malig)), 4)
    plugin = C.resampled_label_probs(malig, 4).max(axis=1).mean()
    assert check["plugin"] > check["true"] + 0.05 and plugin > truth + 0.05  # optimistic, as documented
    assert check["plugin"] == pytest.approx(plugin, abs=0.03)
    checks = C.latent_checks(model, np.arange(len(malig)))
    observed = (C.leave_one_out_labels(malig) == C.panel_labels(malig)[:, None]).mean()
    assert checks["loo"] == pytest.approx(observed, abs=0.03)


def test_latent_imputations_are_distributions_and_seeded() -> None:
    rng = np.random.default_rng(1)
    malig = _simulate(rng, rng.uniform(1, 5, size=120), 0.8, 3)
    model = C.fit_latent(malig, sigmas=(0.4, 0.8, 1.2), iters=50)
    n = C.reader_count(malig)
    a, b = C.latent_imputations(model, n, n_draws=5, seed=3), C.latent_imputations(model, n, n_draws=5, seed=3)
    assert a.shape == (5, 120, 3) and np.allclose(a.sum(axis=2), 1) and np.array_equal(a, b)


def test_patient_bootstrap_keeps_a_patients_nodules_together_and_is_seeded() -> None:
    values = np.array([1.0] * 10 + [0.0] * 10)
    patients = np.array(["p1"] * 10 + ["p2"] * 10)
    seen = []

    def stat(idx: np.ndarray) -> float:
        seen.append(values[idx].mean())
        return seen[-1]

    lo, hi = C.patient_bootstrap(stat, patients, n_boot=200, seed=0)
    assert set(np.round(seen, 6)) <= {0.0, 0.5, 1.0} and (lo, hi) == (0.0, 1.0)
    assert C.patient_bootstrap(stat, patients, n_boot=50, seed=4) == C.patient_bootstrap(stat, patients,
                                                                                         n_boot=50, seed=4)


def test_scores_confusion_rows_are_labels() -> None:
    s = C.scores(np.array([B, B, U, M]), np.array([B, U, U, M]))
    assert s["accuracy"] == 0.75 and s["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert s["macro_auc"] is None


# ------------------------------------------------------------------------------------------ the results page

PAGE = """# Results

## Main table

| row | seeds | accuracy (seeds) | unsure F1 (seeds) | macro AUC (seeds) | accuracy | unsure F1 | macro AUC | ECE |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
| `radiomics_gbm` | 1 | 0.630 | 0.583 | 0.813 | 0.630 | 0.583 | 0.813 | 0.223 |
| `autorad_quality` | 3 | 0.657 ± 0.003 | 0.645 ± 0.005 | 0.830 ± 0.004 | 0.660 | 0.652 | 0.833 | 0.041 |

## Targets

text before
<!-- ceiling:start -->
old section
<!-- ceiling:end -->

## Deviations from the paper

text after
"""


def test_section_replacement_is_idempotent_and_leaves_the_rest(script) -> None:
    new = f"{script.START}\n## Ceiling\n\nnew numbers\n{script.END}\n"
    once = script.replace_section(PAGE, new)
    assert script.replace_section(once, new) == once
    assert "old section" not in once and "new numbers" in once
    head, tail = PAGE.split(script.START)[0], PAGE.split(script.END)[1]
    assert once.startswith(head) and once.endswith(tail)
    assert once == head + new.strip("\n") + tail


def test_section_replacement_needs_both_markers_once(script) -> None:
    for text in ("no markers", PAGE.replace(script.END, ""), PAGE + script.START,
                 f"{script.END}\n{script.START}"):
        with pytest.raises(InputError):
            script.replace_section(text, f"{script.START}{script.END}")


def test_model_row_reads_the_seed_ensemble_columns_outside_the_section(script) -> None:
    assert script.model_row(PAGE, "autorad_quality") == {"accuracy": 0.660, "unsure F1": 0.652, "macro AUC": 0.833}
    fake = PAGE.replace("old section", "## Main table\n\n| row | accuracy |\n|---|---|\n| `autorad_x` | 0.9 |")
    with pytest.raises(InputError):
        script.model_row(fake, "autorad_x")
    with pytest.raises(InputError):
        script.model_row(PAGE, "no_such_row")


def test_script_refuses_missing_data_and_markers_without_touching_the_page(script, tmp_path, monkeypatch,
                                                                          capsys) -> None:
    monkeypatch.setenv("AUTORAD_SHARED_DATA", str(tmp_path))
    page = tmp_path / "results.md"
    page.write_text("no markers here\n")
    assert script.main(["--write", str(page), "--page", str(page)]) == 2
    assert "lidc_maxslice_dev.npz not found" in capsys.readouterr().err
    assert page.read_text() == "no markers here\n"


@pytest.mark.shared_data
def test_real_counts_match_the_dataset_rule(script, maxslice_npz: Path, tmp_path, monkeypatch, capsys) -> None:
    ev = script.evaluated_nodules(maxslice_npz)
    assert ev["all_counts"].tolist() == [0, 651, 418, 425, 663]  # readers per nodule in the whole file
    m = ev["malignancy"]
    n = C.reader_count(m)
    assert len(m) == 1086 and ev["n_no_mask"] == 2
    assert int((n == 4).sum()) == 662 and int((n == 3).sum()) == 424
    assert np.bincount(C.median_labels(m), minlength=3).tolist() == [362, 409, 315]  # docs/data.md
    assert len(np.unique(ev["patients"])) == 546
    # the markers are checked before any computation: the page is left as it was
    monkeypatch.setenv("AUTORAD_SHARED_DATA", str(maxslice_npz.parents[1]))
    page = tmp_path / "results.md"
    page.write_text(PAGE.replace(script.START, ""))
    assert script.main(["--write", str(page), "--page", str(page), "--model", "autorad_quality"]) == 2
    assert "ceiling:start" in capsys.readouterr().err and page.read_text() == PAGE.replace(script.START, "")


@pytest.mark.shared_data
def test_same_nodules_as_the_dataset(script, maxslice_npz: Path, small_maxslice_dataset: Path) -> None:
    """The ceiling's nodules are the ones ingest keeps (checked on the fixture's first 150 nodules)."""
    from autorad.data.dataset import Dataset

    ev = script.evaluated_nodules(maxslice_npz)
    ours = {int(i) for i, r in zip(ev["nodule_id"], ev["row"], strict=True) if r < 150}
    manifest = Dataset(small_maxslice_dataset).manifest
    assert ours == {int(i) for i in manifest["source_nodule_id"]} and len(ours) > 50


def test_a_regenerated_results_page_keeps_the_ceiling_section():
    import sys

    path = SCRIPT.parent / "make_results.py"
    spec = importlib.util.spec_from_file_location("make_results", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["make_results"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    old = ("# R\n\nold table\n\n<!-- ceiling:start -->\nceiling text\n<!-- ceiling:end -->\n\n"
           "## Deviations from the paper\n")
    new = "# R\n\nnew table\n\n## Deviations from the paper\n\nd\n"
    out = mod.carry_sections(old, new)
    assert "new table" in out and "old table" not in out and out.endswith("d\n")
    assert out.index("ceiling text") < out.index("## Deviations") and out.count("<!-- ceiling:start -->") == 1
    assert mod.carry_sections(old, out) == out  # a page that has the section keeps its own
