"""Simulated CT pixels around a real nodule shape: parenchyma, vessels, nodule density, calcium, blur, noise.

The recipe (numbers in HU and mm; see docs/phantom.md):

* parenchyma: a per-nodule level from N(-850, 25) clipped to -910..-780, a smooth 8 mm-scale variation
  (sd 12) and a gentle linear gradient (up to +-15 across the field);
* nodule: inside the real consensus mask, density from the readers' mean texture rating t (1 = ground glass
  .. 5 = solid): a ground-glass level of -680..-500 and a solid level of -10..50, the solid part growing
  from the centre outwards with fraction clip((t - 1.5) / 3, 0, 1) (t = 3: the inner half of the depth is
  solid, a part-solid nodule), plus smooth internal texture (sd 15-45, larger for ground glass); the edge is
  softened by up to 0.6 mm for a poorly defined margin rating;
* chest wall in 35% of the fields (a third of them touching the nodule): pleura and muscle 30-60, a fat
  layer -120..-80, flat rib cross-sections (cortex 500-800, marrow 150-300), at most 40% of the field;
* vessels: branching tapering tubes (4 + Poisson(slice area / 150 mm^2) trees, root radius 0.4-2.2 mm,
  children 0.65-0.85 x the parent, down to 0.25 mm) sharing a main direction, at 30-150 HU; each slice
  averages sub-planes across its real slice thickness, so thin vessels fade as in real partial volume;
* spicules: for mean spiculation >= 3.5, 6-14 thin strands (radius 0.35-0.7 mm, 4-15 mm long) leaving the
  surface;
* calcification (most common non-absent LIDC pattern when at least half of the readers saw calcium):
  popcorn (1) = 3-6 blobs, laminated (2) = concentric shells 2.2 mm apart, solid (3) = the whole nodule,
  non-central (4) = one eccentric blob, central (5) = the central core; calcium at 450-1000;
* partial-volume blur: Gaussian, sigma 0.45 mm in plane and 0.25 slice along z;
* correlated noise: white noise filtered by a Gaussian of sigma 0.7 mm in plane (0.3 slice along z),
  rescaled to a standard deviation of 20-45.

Every draw comes from the ``numpy.random.Generator`` passed in, so a seed gives byte-identical arrays.

Hand-written on scipy.ndimage (filters, distance transforms): no maintained Python package simulates lung
CT texture around a given mask (anatomical phantoms such as XCAT are whole-body, licensed and need a
projector and reconstruction).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from autorad.data.dataset import RATING_NAMES

AIR_HU, MAX_HU = -1024, 3071
CALCIFICATION_ABSENT = 6
CALCIFICATION_PATTERNS = {1: "popcorn", 2: "laminated", 3: "solid", 4: "non-central", 5: "central"}
NOISE_SIGMA_MM = 0.7
BLUR_SIGMA_MM = 0.45
NODULE_EDGE_MM = 0.5  # sigma of the nodule's own partial-volume edge, in plane
NODULE_EDGE_SLICES = 0.4  # and along z, in slices
MAX_WALL_FRACTION = 0.4
SUBPLANE_MM = 0.9  # vessels are drawn on sub-planes this far apart across each slice's thickness


@dataclass(frozen=True)
class NoduleLook:
    """The readers' ratings that drive the pixels."""

    texture: float  # mean texture rating, 1 (ground glass) .. 5 (solid)
    calcification: int  # LIDC pattern 1-5, or 6 = absent
    spiculation: float  # mean spiculation rating 1..5
    margin: float = 3.0  # mean margin rating, 1 (poorly defined) .. 5 (sharp)

    @classmethod
    def from_ratings(cls, texture: np.ndarray, calcification: np.ndarray, spiculation: np.ndarray,
                     margin: np.ndarray | None = None) -> NoduleLook:
        """Aggregate all readers' ratings (0 = not rated): means for texture, spiculation and margin;
        calcification is present when at least half of the raters saw it, with their most common pattern."""
        t = [int(x) for x in texture if x > 0]
        s = [int(x) for x in spiculation if x > 0]
        c = [int(x) for x in calcification if x > 0]
        m = [int(x) for x in (margin if margin is not None else []) if x > 0]
        seen = [x for x in c if x != CALCIFICATION_ABSENT]
        pattern = CALCIFICATION_ABSENT
        if seen and 2 * len(seen) >= len(c):
            counts = Counter(seen)
            pattern = min(counts, key=lambda p: (-counts[p], p))
        return cls(float(np.mean(t)) if t else 3.0, pattern, float(np.mean(s)) if s else 1.0,
                   float(np.mean(m)) if m else 3.0)

    @classmethod
    def from_rating_table(cls, ratings: np.ndarray) -> NoduleLook:
        """From a (readers, 9) table in RATING_NAMES order."""
        col = {n: np.asarray(ratings)[:, RATING_NAMES.index(n)] for n in
               ("texture", "calcification", "spiculation", "margin")}
        return cls.from_ratings(col["texture"], col["calcification"], col["spiculation"], col["margin"])

    @property
    def edge_blur_mm(self) -> float:
        """Extra edge softness: 0.6 mm for a poorly defined margin (1), none for a sharp one (5)."""
        return float(np.clip((5.0 - self.margin) * 0.15, 0.0, 0.6))

    @property
    def solid_fraction(self) -> float:
        """Fraction of the nodule's depth that is solid: 0 for ground glass (t <= 1.5), 1 for t >= 4.5."""
        return float(np.clip((self.texture - 1.5) / 3.0, 0.0, 1.0))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...],
                  sigma_px: tuple[float, ...]) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to unit standard deviation."""
    field = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma_px, mode="wrap")
    sd = float(field.std())
    return field / sd if sd > 0 else field


def grow_vessel_tree(rng: np.random.Generator, starts: np.ndarray, directions: np.ndarray, radii: np.ndarray,
                     box: np.ndarray, step: float = 0.4, min_radius: float = 0.3,
                     max_points: int = 30000) -> tuple[np.ndarray, np.ndarray]:
    """Centre points (mm, z/y/x) and radii of tapering, branching tubes grown from ``starts``.

    Generation by generation (all branches at once): each branch runs 4 + min(Exp(10), 26) mm with a wandering
    direction, stops where it leaves ``box`` ((2, 3) low/high corners), and otherwise splits into two children
    turned 15-45 degrees away, each 0.65-0.85 x as thick; branches thinner than ``min_radius`` are dropped.
    """
    pos = np.asarray(starts, dtype=float).reshape(-1, 3)
    d = np.asarray(directions, dtype=float).reshape(-1, 3)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    r = np.asarray(radii, dtype=float).reshape(-1)
    pts: list[np.ndarray] = []
    rads: list[np.ndarray] = []
    total = 0
    while len(pos) and total < max_points:
        m = len(pos)
        nsteps = ((np.minimum(rng.exponential(10.0, m), 26.0) + 4.0) / step).astype(int)
        n_max = int(nsteps.max())
        dirs = d[:, None, :] + np.cumsum(rng.normal(0.0, 0.06, (m, n_max, 3)), axis=1)
        dirs /= np.linalg.norm(dirs, axis=2, keepdims=True)
        path = pos[:, None, :] + step * np.cumsum(dirs, axis=1)
        inside = np.all((path >= box[0]) & (path <= box[1]), axis=2)
        keep = (np.arange(n_max)[None, :] < nsteps[:, None]) & (np.cumprod(inside, axis=1) > 0)
        pts.append(path[keep])
        rads.append(np.repeat(r, keep.sum(axis=1)))
        total += int(keep.sum())
        done = keep[np.arange(m), nsteps - 1]  # reached its full length inside the box: branches
        if not done.any():
            break
        last = nsteps[done] - 1
        end_pos, end_dir, end_r = path[done, last], dirs[done, last], r[done]
        kids_pos, kids_dir, kids_r = [], [], []
        for sign in (1.0, -1.0):
            ortho = np.cross(end_dir, rng.normal(size=end_dir.shape))
            ortho /= np.linalg.norm(ortho, axis=1, keepdims=True) + 1e-12
            angle = np.deg2rad(rng.uniform(15.0, 45.0, len(end_dir)))[:, None]
            kids_pos.append(end_pos)
            kids_dir.append(np.cos(angle) * end_dir + sign * np.sin(angle) * ortho)
            kids_r.append(end_r * rng.uniform(0.65, 0.85, len(end_r)))
        pos, d, r = np.concatenate(kids_pos), np.concatenate(kids_dir), np.concatenate(kids_r)
        thick = r >= min_radius
        pos, d, r = pos[thick], d[thick], r[thick]
    if not pts:
        return np.zeros((0, 3)), np.zeros(0)
    return np.concatenate(pts)[:max_points], np.concatenate(rads)[:max_points]


def render_tubes(points: np.ndarray, radii: np.ndarray, shape: tuple[int, int, int],
                 spacing: tuple[float, float, float], thickness_mm: float) -> np.ndarray:
    """Occupancy (0..1) of tubes given as centre points (mm, z/y/x, voxel (0,0,0) at the origin) and radii.

    Each slice averages sub-planes spread over its slice thickness (partial volume along z); in plane the edge
    is anti-aliased over one pixel. Nearest centre point by a distance transform per sub-plane.
    """
    occ = np.zeros(shape, dtype=np.float32)
    if len(points) == 0:
        return occ
    sz, sy, sx = spacing
    n_sub = max(1, int(np.ceil(thickness_mm / SUBPLANE_MM)))
    offsets = (np.arange(n_sub) + 0.5) / n_sub * thickness_mm - thickness_mm / 2.0
    rows = np.clip(np.rint(points[:, 1] / sy).astype(int), 0, shape[1] - 1)
    cols = np.clip(np.rint(points[:, 2] / sx).astype(int), 0, shape[2] - 1)
    for k in range(shape[0]):
        acc = np.zeros(shape[1:], dtype=np.float32)
        for off in offsets:
            dz = points[:, 0] - (k * sz + off)
            sel = np.abs(dz) < radii
            if not sel.any():
                continue
            reff = np.zeros(shape[1:], dtype=np.float32)
            r_here = np.sqrt(radii[sel] ** 2 - dz[sel] ** 2).astype(np.float32)
            np.maximum.at(reff, (rows[sel], cols[sel]), r_here)
            dist, (ir, ic) = ndi.distance_transform_edt(reff == 0, sampling=(sy, sx), return_indices=True)
            acc += np.clip((reff[ir, ic] - dist) / min(sy, sx) + 0.5, 0.0, 1.0)
        occ[k] = acc / n_sub
    return occ


def _vessels(rng: np.random.Generator, shape: tuple[int, int, int], spacing: tuple[float, float, float],
             thickness_mm: float) -> np.ndarray:
    """Occupancy of random vessel trees filling the field (4 + Poisson(slice area / 150 mm^2) trees, root
    radius 0.4-2.2 mm, mostly thin) that share a main direction, as vessels in one lung region roughly do."""
    size = np.array(shape, dtype=float) * np.array(spacing)
    margin = 10.0
    box = np.stack([-np.full(3, margin), size + margin])
    main = rng.normal(size=3)
    main /= np.linalg.norm(main)
    n_trees = 4 + int(rng.poisson(size[1] * size[2] / 150.0))
    starts = rng.uniform(box[0], box[1], (n_trees, 3))
    directions = main + rng.normal(0.0, 0.7, (n_trees, 3))
    radii = 0.4 + 1.8 * rng.uniform(0.0, 1.0, n_trees) ** 2
    points, radii = grow_vessel_tree(rng, starts, directions, radii, box, min_radius=0.25, max_points=25000)
    return render_tubes(points, radii, shape, spacing, thickness_mm)


def chest_wall(rng: np.random.Generator, mask: np.ndarray, spacing: tuple[float, float, float],
               gap_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy (0..1) and HU of a chest wall ``gap_mm`` beyond the nodule (0 = touching: juxtapleural).

    The lung is the inside of a circle of radius 80-200 mm; beyond it lie 1-3 mm of pleura and intercostal
    muscle (30-60 HU), a fat layer (-120..-80 HU), muscle, and rib cross-sections (cortex 500-800 HU, marrow
    150-300 HU). Same on every slice of the slab; the nodule's pixels are never covered, and the wall
    covers at most MAX_WALL_FRACTION of the field.
    """
    _, h, w = mask.shape
    sy, sx = spacing[1], spacing[2]
    yy, xx = np.meshgrid(np.arange(h) * sy, np.arange(w) * sx, indexing="ij")
    foot = mask.any(axis=0)
    cy, cx = float(yy[foot].mean()), float(xx[foot].mean())
    ang = rng.uniform(0, 2 * np.pi)
    u = np.array([np.sin(ang), np.cos(ang)])
    reach = float(((yy[foot] - cy) * u[0] + (xx[foot] - cx) * u[1]).max())
    radius = rng.uniform(80.0, 200.0)
    oy, ox = cy - u[0] * (radius - reach - gap_mm), cx - u[1] * (radius - reach - gap_mm)
    dist = np.sqrt((yy - oy) ** 2 + (xx - ox) ** 2)
    radius = max(radius, float(dist[foot].max()) + max(gap_mm, 0.5 * min(sy, sx)))
    t = dist - radius  # mm beyond the pleura
    if (t > 0).mean() > MAX_WALL_FRACTION:  # keep most of the field lung: move the wall outwards
        t -= float(np.quantile(t, 1.0 - MAX_WALL_FRACTION))
    occ = np.clip(t / min(sy, sx) + 0.5, 0.0, 1.0).astype(np.float32)
    muscle = rng.uniform(30.0, 60.0)
    hu = np.full((h, w), muscle, dtype=np.float32)
    fat0 = rng.uniform(1.0, 3.0)
    fat1 = fat0 + rng.uniform(1.5, 5.0)
    hu[(t > fat0) & (t < fat1)] = rng.uniform(-120.0, -80.0)
    # ribs: flat ellipses in the wall, every ~28 mm along it
    along = np.arctan2(yy - oy, xx - ox) * radius
    mid = np.arctan2(cy - oy, cx - ox) * radius + rng.uniform(-12.0, 12.0)
    depth_c = fat1 + rng.uniform(3.0, 6.0)
    for k in range(-3, 4):
        a, b = rng.uniform(7.0, 14.0), rng.uniform(3.0, 4.5)
        e = np.sqrt(((along - (mid + 28.0 * k)) / a) ** 2 + ((t - depth_c) / b) ** 2)
        if rng.uniform() < 0.3:  # this slice passes between two ribs
            continue
        hu[e <= 1.0] = rng.uniform(500.0, 800.0)
        hu[e <= 1.0 - 1.2 / b] = rng.uniform(150.0, 300.0)
    return np.repeat(occ[None], mask.shape[0], axis=0), np.repeat(hu[None], mask.shape[0], axis=0)


def _spicules(rng: np.random.Generator, mask: np.ndarray, depth_mm: np.ndarray,
              spacing: tuple[float, float, float], thickness_mm: float) -> np.ndarray:
    """Occupancy of 6-14 thin strands (radius 0.35-0.7 mm, 4-15 mm long, tapering) leaving the nodule
    surface radially from its centre."""
    sp = np.array(spacing)
    surface = np.argwhere(mask & (depth_mm <= sp[1:].max() * 1.01))
    if len(surface) == 0:
        return np.zeros(mask.shape, dtype=np.float32)
    centre = np.argwhere(mask).mean(axis=0) * sp
    points, radii = [], []
    for idx in rng.choice(len(surface), size=min(len(surface), int(rng.integers(6, 15))), replace=False):
        start = surface[idx] * sp
        d = start - centre + rng.normal(0.0, 0.5, 3)
        d /= np.linalg.norm(d) + 1e-12
        r0, length = rng.uniform(0.35, 0.7), rng.uniform(4.0, 15.0)
        for t in np.arange(0.0, length, 0.3):
            d = d + rng.normal(0.0, 0.05, 3)
            d /= np.linalg.norm(d)
            points.append(start + t * d)
            radii.append(r0 * (1.0 - 0.6 * t / length))
    return render_tubes(np.array(points), np.array(radii), mask.shape, spacing, thickness_mm)


def calcium_mask(rng: np.random.Generator, pattern: int, mask: np.ndarray, depth_mm: np.ndarray,
                 spacing: tuple[float, float, float]) -> np.ndarray:
    """Where the calcium lies inside ``mask`` for an LIDC calcification pattern (1-5); never empty for 1-5."""
    if pattern not in CALCIFICATION_PATTERNS or not mask.any():
        return np.zeros(mask.shape, dtype=bool)
    dmax = float(depth_mm.max())
    nd = depth_mm / dmax
    sp = np.array(spacing)
    if pattern == 3:  # solid: the whole nodule but its rim
        calc = nd >= 0.15
    elif pattern == 5:  # central
        calc = nd >= 0.5
    elif pattern == 2:  # laminated: concentric shells around a core
        calc = (nd >= 0.75) | ((np.cos(2 * np.pi * (dmax - depth_mm) / 2.2) > 0.4) & (nd >= 0.2))
    else:  # 1 popcorn: several blobs; 4 non-central: one eccentric blob
        candidates = np.argwhere(mask & (nd >= 0.25) & (nd <= (0.9 if pattern == 1 else 0.6)))
        if len(candidates) == 0:
            candidates = np.argwhere(mask & (nd >= 0.5))
        n_blobs = int(rng.integers(3, 7)) if pattern == 1 else 1
        centres = candidates[rng.choice(len(candidates), size=min(n_blobs, len(candidates)), replace=False)]
        blob_r = max(0.9, (0.25 if pattern == 1 else 0.4) * dmax)
        grid = np.indices(mask.shape).reshape(3, -1).T * sp
        calc = np.zeros(mask.size, dtype=bool)
        for c in centres:
            calc |= np.sqrt((((grid - c * sp) * np.array([0.6, 1.0, 1.0])) ** 2).sum(axis=1)) <= blob_r
        calc = calc.reshape(mask.shape)
    calc &= mask
    if not calc.any():  # tiny nodule: at least its deepest voxels
        calc = mask & (depth_mm >= dmax * 0.99)
    return calc


def _nodule_density(rng: np.random.Generator, mask: np.ndarray, depth_mm: np.ndarray,
                    spacing: tuple[float, float, float], look: NoduleLook) -> np.ndarray:
    """HU inside the nodule (values outside ``mask`` are meaningless): ground glass with a solid part growing
    from the centre (fraction from the texture rating), and smooth internal texture."""
    sz, sy, sx = spacing
    nd = depth_mm / float(depth_mm.max())
    f = look.solid_fraction
    ggo_hu = rng.uniform(-680.0, -500.0)
    solid_hu = rng.uniform(-10.0, 50.0)
    wobble = 0.15 * _smooth_noise(rng, mask.shape, (1.5 / sz, 1.5 / sy, 1.5 / sx))
    if f >= 1.0:
        solid_w: np.ndarray | float = 1.0
    elif f <= 0.0:
        solid_w = 0.0
    else:
        solid_w = 1.0 / (1.0 + np.exp(-((nd + wobble) - (1.0 - f)) / 0.06))
    texture = (45.0 - 30.0 * f) * _smooth_noise(rng, mask.shape, (1.0 / sz, 1.0 / sy, 1.0 / sx))
    return (ggo_hu + (solid_hu - ggo_hu) * solid_w + texture).astype(np.float32)


def simulate_slab(mask: np.ndarray, spacing: tuple[float, float, float], thickness_mm: float,
                  look: NoduleLook, rng: np.random.Generator) -> np.ndarray:
    """Simulated HU (int16) for a slab whose nodule occupies ``mask`` (slices, rows, columns).

    ``spacing`` is (slice spacing, row, column) in mm, ``thickness_mm`` the scan's slice thickness.
    """
    shape = mask.shape
    sz, sy, sx = spacing
    # parenchyma: level, smooth variation, gradient (constant along the few slices of the slab)
    level = float(np.clip(rng.normal(-850.0, 25.0), -910.0, -780.0))
    plane = level + 12.0 * _smooth_noise(rng, shape[1:], (8.0 / sy, 8.0 / sx))
    grad = rng.normal(size=2)
    grad *= rng.uniform(0.0, 15.0) / (np.linalg.norm(grad) + 1e-12)
    yy, xx = np.meshgrid(np.linspace(-1, 1, shape[1]), np.linspace(-1, 1, shape[2]), indexing="ij")
    img = np.repeat((plane + grad[0] * yy + grad[1] * xx).astype(np.float32)[None], shape[0], axis=0)

    # the nodule, computed on its bounding box (+ margin) only; a poorly defined margin gets a softer edge
    box: tuple[slice, ...] = ()
    depth = np.zeros(0, dtype=np.float32)
    if mask.any():
        idx = np.nonzero(mask)
        box = tuple(slice(max(int(i.min()) - 3, 0), int(i.max()) + 4) for i in idx)
        sub = mask[box]
        depth = ndi.distance_transform_edt(sub, sampling=spacing).astype(np.float32)
        dens = _nodule_density(rng, sub, depth, spacing, look)
        dens = np.where(sub, dens, ndi.grey_dilation(np.where(sub, dens, -2000.0), size=(1, 3, 3)))
        # partial volume of the nodule itself: its edge fades over NODULE_EDGE_MM (+ the margin's softness)
        # in plane and over a third of a slice along z, inside and outside the outline alike
        edge = NODULE_EDGE_MM + look.edge_blur_mm
        occ = ndi.gaussian_filter(sub.astype(np.float32), (NODULE_EDGE_SLICES, edge / sy, edge / sx))
        region = img[box]
        img[box] = region + occ * (np.maximum(dens, region) - region)

    # chest wall in 35% of the fields (a third of them touching the nodule)
    wall = np.zeros(shape, dtype=np.float32)
    if mask.any() and rng.uniform() < 0.35:
        gap = 0.0 if rng.uniform() < 0.35 else float(rng.uniform(1.0, 12.0))
        wall, wall_hu = chest_wall(rng, mask, spacing, gap)
        img += wall * (wall_hu - img)

    # vessels (and spicules) in the lung: they pass through ground glass and merge into solid tissue
    vessel_hu = rng.uniform(30.0, 150.0)
    tubes = _vessels(rng, shape, spacing, thickness_mm)
    if box and look.spiculation >= 3.5:
        tubes[box] = np.maximum(tubes[box], _spicules(rng, mask[box], depth, spacing, thickness_mm))
    tubes *= 1.0 - wall
    img += tubes * (np.maximum(img, vessel_hu) - img)

    # calcium
    if box and look.calcification in CALCIFICATION_PATTERNS:
        region = img[box]
        region[calcium_mask(rng, look.calcification, mask[box], depth, spacing)] = rng.uniform(450.0, 1000.0)

    # partial volume, then correlated noise
    img = ndi.gaussian_filter(img, (0.25, BLUR_SIGMA_MM / sy, BLUR_SIGMA_MM / sx), mode="nearest")
    noise_sigma = (0.3, NOISE_SIGMA_MM / sy, NOISE_SIGMA_MM / sx)
    img += rng.uniform(20.0, 45.0) * _smooth_noise(rng, shape, noise_sigma)
    return np.clip(np.rint(img), AIR_HU, MAX_HU).astype(np.int16)
