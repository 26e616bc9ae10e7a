"""Image folders as a user brings them: crops of real photos (scikit-learn's and scikit-image's sample
photos) at their own small size, one subfolder per photo, written as PNG and JPEG files."""

import os

import numpy as np

PHOTOS = ("china", "flower", "chelsea", "coffee", "astronaut", "rocket")


def photo(name):
    """One embedded colour photo as uint8 RGB at its own size."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    from skimage import data

    return getattr(data, name)()


def photo_folder(root, classes, size, per_class, seed=0):
    """`root/<photo>/<i>.png|jpg`: `per_class` random `size`x`size` crops of each photo in `classes`."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in classes:
        image = photo(name)
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            top = rng.integers(0, image.shape[0] - size + 1)
            left = rng.integers(0, image.shape[1] - size + 1)
            crop = Image.fromarray(image[top:top + size, left:left + size])
            crop.save(os.path.join(root, name, f"{i:03d}.{'png' if i % 2 else 'jpg'}"))
    return os.fspath(root)
