"""Draw docs/figures/phantom_vs_real.png: phantom nodules beside real LIDC ones of similar texture and size.

Usage::

    python docs/scripts/make_phantom_figure.py [--out docs/figures/phantom_vs_real.png] [--maxslice NPZ]

The real windows come from lidc_maxslice_dev.npz in the shared data folder ($AUTORAD_SHARED_DATA); both are
shown as 71 x 71 pixel windows at their own pixel spacing, HU window -1000..400, with the 50% consensus
outline.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from autorad.core.paths import shared_data_dir  # noqa: E402
from autorad.data.crop import equivalent_diameter_mm  # noqa: E402
from autorad.data.dataset import RATING_NAMES  # noqa: E402
from autorad.data.phantom import iter_phantom  # noqa: E402
from autorad.data.phantom_sim import NoduleLook  # noqa: E402

WINDOW = (-1000, 400)
SIDE = 71
COLUMNS = 2  # examples per category

Rule = Callable[[NoduleLook, float], bool]
CATEGORIES: list[tuple[str, Rule]] = [
    ("ground glass", lambda lk, d: lk.texture <= 2.0 and lk.calcification == 6 and d >= 6),
    ("part-solid", lambda lk, d: 2.5 <= lk.texture <= 3.5 and lk.calcification == 6 and d >= 6),
    ("solid < 8 mm", lambda lk, d: lk.texture >= 4.5 and lk.calcification == 6 and d < 8),
    ("solid >= 12 mm", lambda lk, d: lk.texture >= 4.5 and lk.calcification == 6 and lk.spiculation < 3
     and d >= 12),
    ("spiculated", lambda lk, d: lk.spiculation >= 3.5 and lk.calcification == 6),
    ("calcified", lambda lk, d: lk.calcification != 6),
]


def _look(ratings: np.ndarray) -> NoduleLook:
    return NoduleLook.from_rating_table(ratings)


def _window(img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A SIDE x SIDE window centred on the mask (air outside the image)."""
    rows, cols = np.nonzero(mask)
    r0, c0 = int(round(rows.mean())) - SIDE // 2, int(round(cols.mean())) - SIDE // 2
    out_i = np.full((SIDE, SIDE), -1000, dtype=np.int16)
    out_m = np.zeros((SIDE, SIDE), dtype=bool)
    h, w = img.shape
    y0, y1, x0, x1 = max(r0, 0), min(r0 + SIDE, h), max(c0, 0), min(c0 + SIDE, w)
    out_i[y0 - r0:y1 - r0, x0 - c0:x1 - c0] = img[y0:y1, x0:x1]
    out_m[y0 - r0:y1 - r0, x0 - c0:x1 - c0] = mask[y0:y1, x0:x1]
    return out_i, out_m


def _texture_hu_stats(name: str, items: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """Print the numbers of docs/phantom.md's table for (image, mask, ratings) triples."""
    from scipy import ndimage as ndi

    lung, noise, tex, mean_hu = [], [], [], []
    for img, mask, ratings in items:
        img = img.astype(float)
        inside_lung = (img < -500) & ~mask
        lung.append(np.median(img[inside_lung]))
        high_pass = img - ndi.gaussian_filter(img, 2)
        core = ndi.binary_erosion(inside_lung, iterations=3)
        if core.sum() > 200:
            noise.append(high_pass[core].std())
        look = _look(ratings)
        if look.calcification == 6 and mask.any():
            tex.append(look.texture)
            mean_hu.append(float(img[mask].mean()))
    t, h = np.array(tex), np.array(mean_hu)
    bins = [(1, 2), (2, 3.5), (3.5, 4.5), (4.5, 5.1)]
    by_bin = " / ".join(f"{h[(t >= lo) & (t < hi)].mean():.0f}" for lo, hi in bins)
    print(f"{name}: n={len(items)}; lung median of slice medians {np.median(lung):.0f} "
          f"(10-90%: {np.percentile(lung, 10):.0f}..{np.percentile(lung, 90):.0f}); high-pass noise sd "
          f"{np.median(noise):.0f} (10-90%: {np.percentile(noise, 10):.0f}..{np.percentile(noise, 90):.0f}); "
          f"mean HU in mask by texture 1-2 / 2-3.5 / 3.5-4.5 / 4.5-5: {by_bin}; "
          f"corr(texture, mean HU) {np.corrcoef(t, h)[0, 1]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/figures/phantom_vs_real.png")
    ap.add_argument("--maxslice", default=None,
                    help="lidc_maxslice_dev.npz (default: in the shared data folder)")
    ap.add_argument("--n", type=int, default=300, help="phantom nodules to choose examples from")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stats", action="store_true", help="also print the numbers of docs/phantom.md's table")
    a = ap.parse_args()
    path = Path(a.maxslice) if a.maxslice else (shared_data_dir() or Path(".")) / "lidc_maxslice" / \
        "lidc_maxslice_dev.npz"
    with np.load(path, allow_pickle=False) as z:
        real = {k: z[k] for k in ("images_hu", "consensus_mask", "ratings", "pixel_spacing_mm")}
    names = [str(x) for x in np.load(path, allow_pickle=False)["rating_names"]]
    real["ratings"] = real["ratings"][:, :, [names.index(n) for n in RATING_NAMES]]
    real_ok = [i for i in range(len(real["ratings"])) if real["consensus_mask"][i].any()
               and np.count_nonzero(real["ratings"][i][:, -1]) >= 3]
    real_look = {i: _look(real["ratings"][i]) for i in real_ok}
    real_d = {i: equivalent_diameter_mm(real["consensus_mask"][i], float(real["pixel_spacing_mm"][i]))
              for i in real_ok}

    phantoms = list(iter_phantom(a.n, a.seed))
    if a.stats:
        _texture_hu_stats("phantom", [(p.slice_hu, p.slice_mask, p.ratings) for p in phantoms])
        _texture_hu_stats("real", [(real["images_hu"][i], real["consensus_mask"][i], real["ratings"][i])
                                   for i in real_ok])
    rng = np.random.default_rng(a.seed)
    fig, axes = plt.subplots(2 * COLUMNS, len(CATEGORIES),
                             figsize=(2.1 * len(CATEGORIES), 2.25 * 2 * COLUMNS))
    for j, (title, rule) in enumerate(CATEGORIES):
        picks = [p for p in phantoms if rule(_look(p.ratings), equivalent_diameter_mm(p.slice_mask,
                                                                                        p.pixel_spacing_mm))]
        used: set[int] = set()
        for e in range(COLUMNS):
            ax_p, ax_r = axes[2 * e, j], axes[2 * e + 1, j]
            for ax in (ax_p, ax_r):
                ax.set_xticks([])
                ax.set_yticks([])
            if e >= len(picks):
                continue
            p = picks[int(rng.integers(len(picks)))] if e else picks[0]
            d = equivalent_diameter_mm(p.slice_mask, p.pixel_spacing_mm)
            cands = [i for i in real_ok if i not in used and rule(real_look[i], real_d[i])]
            t = _look(p.ratings).texture
            i = min(cands, key=lambda i: abs(real_d[i] - d) + 0.5 * abs(real_look[i].texture - t))
            used.add(i)
            for ax, img, mask, label in (
                    (ax_p, p.slice_hu, p.slice_mask, f"phantom {d:.0f} mm"),
                    (ax_r, real["images_hu"][i], real["consensus_mask"][i], f"real {real_d[i]:.0f} mm")):
                w_img, w_mask = _window(img, mask)
                ax.imshow(w_img, cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], interpolation="nearest")
                ax.contour(w_mask.astype(float), levels=[0.5], colors="tab:orange", linewidths=0.7)
                ax.set_xlabel(label, fontsize=7, labelpad=1)
            if e == 0:
                ax_p.set_title(title, fontsize=9)
    fig.suptitle("Phantom (simulated pixels, real LIDC outlines and ratings) vs real LIDC CT; "
                 f"HU window {WINDOW[0]}..{WINDOW[1]}, {SIDE} x {SIDE} px", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
