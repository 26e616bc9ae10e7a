"""Scenes of the bundled `shapes` detection set: coloured circles, rectangles and triangles on photo crops.

Everything comes from material the package's dependencies already ship: the backgrounds are crops of the
scikit-image and scikit-learn sample photos, the shapes are rasterized with `skimage.draw`. Objects never
overlap, so each object's pixels are exactly its drawn mask and its box is the tight box of that mask: the
boxes and masks are exact, not annotated by hand. `datasets.shapes` writes the scenes as a COCO folder.
"""

import colorsys

import numpy as np

from keras_mobilenets.extras import require

SHAPES_CLASSES = ("circle", "rectangle", "triangle")
SHAPES_CATEGORY_IDS = (1, 2, 3)  # the COCO category ids written to instances.json, one per class
# scikit-image's bundled colour photos (no download) plus scikit-learn's two sample images
_SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
                   "camera", "coins")
OBJECT_SIZE = (0.22, 0.5)  # an object's extent as a fraction of the image side: large enough to learn fast
MAX_OBJECTS = 4


def background_photos():
    """The sample photos the backgrounds are cut from, as uint8 RGB arrays (grayscale ones repeated)."""
    data = require("skimage.data", "train")
    load_sample_images = require("sklearn.datasets", "train").load_sample_images

    photos = [getattr(data, name)() for name in _SKIMAGE_PHOTOS] + list(load_sample_images().images)
    return [np.repeat(p[..., None], 3, axis=-1) if p.ndim == 2 else p[..., :3] for p in photos]


def _background(rng, photos, size):
    Image = require("PIL.Image", "train")

    photo = photos[rng.integers(len(photos))]
    height, width = photo.shape[:2]
    side = int(rng.uniform(0.3, 1.0) * min(height, width))
    top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
    crop = Image.fromarray(photo[top:top + side, left:left + side]).resize((size, size), Image.BILINEAR)
    crop = np.asarray(crop)
    return crop[:, ::-1].copy() if rng.random() < 0.5 else crop.copy()


def _mask(rng, label, extent, size):
    """A boolean mask of one shape of about `extent` pixels, drawn at the top-left of a size x size canvas."""
    draw = require("skimage.draw", "train")

    mask = np.zeros((size, size), bool)
    if label == 0:  # circle
        radius = extent / 2
        rows, cols = draw.disk((radius, radius), radius, shape=mask.shape)
    elif label == 1:  # axis-aligned rectangle, aspect ratio 1/2 to 2
        aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
        height, width = extent * min(1.0, 1 / aspect), extent * min(1.0, aspect)
        rows, cols = draw.rectangle((0, 0), extent=(max(2, round(height)), max(2, round(width))),
                                    shape=mask.shape)
    else:  # triangle: three corners about 120 degrees apart on a circle, turned at random
        radius = extent / 2
        angles = rng.uniform(0, 2 * np.pi) + np.arange(3) * 2 * np.pi / 3 + rng.uniform(-0.25, 0.25, 3)
        rows, cols = draw.polygon(radius + radius * np.sin(angles), radius + radius * np.cos(angles),
                                  shape=mask.shape)
    mask[rows, cols] = True
    ys, xs = np.nonzero(mask)
    return mask[:ys.max() + 1, :xs.max() + 1]


def _colour(rng):
    red, green, blue = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.7, 1.0), rng.uniform(0.75, 1.0))
    return np.asarray([red, green, blue]) * 255


def render_scene(rng, photos, size):
    """One scene: (uint8 image [size, size, 3], labels [N], boxes [N, 4] in pixels as x, y, width, height,
    masks [N, size, size] bool). 1 to `MAX_OBJECTS` non-overlapping objects with a 2-pixel gap."""
    image = _background(rng, photos, size)
    taken = np.zeros((size, size), bool)
    labels, boxes, masks = [], [], []
    for _ in range(rng.integers(1, MAX_OBJECTS + 1)):
        label = int(rng.integers(len(SHAPES_CLASSES)))
        shape = _mask(rng, label, rng.uniform(*OBJECT_SIZE) * size, size)
        height, width = shape.shape
        for _attempt in range(30):
            top, left = rng.integers(0, size - height + 1), rng.integers(0, size - width + 1)
            lo_y, lo_x = max(0, top - 2), max(0, left - 2)
            if not taken[lo_y:top + height + 2, lo_x:left + width + 2].any():
                break
        else:
            continue  # no room left for this object
        mask = np.zeros((size, size), bool)
        mask[top:top + height, left:left + width] = shape
        taken[top:top + height, left:left + width] = True
        image[mask] = np.round(_colour(rng)).astype(np.uint8)
        ys, xs = np.nonzero(mask)
        labels.append(label)
        boxes.append([int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)])
        masks.append(mask)
    return image, np.asarray(labels, np.int32), np.asarray(boxes, np.int64).reshape(-1, 4), np.asarray(masks)


def rle_counts(mask):
    """COCO's uncompressed run-length encoding of a boolean mask (column-major runs, starting with 0s)."""
    flat = np.asarray(mask, bool).flatten(order="F")
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    return [0] + counts if flat[0] else counts
