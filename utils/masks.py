"""Label masks on disk: indexed palette PNGs (or grey-level label PNGs) in, palette PNGs out."""
import numpy as np
from PIL import Image

from utils.errors import UserError
from utils.files import atomic_path
from utils.images import opened_image
from utils.palette import FLAT_PALETTE

VOID_LABEL = 255  # ground-truth pixels that belong to no object and are not background
# More objects than this in one mask is almost surely an image that is not a label map.
MAX_OBJECTS = 64
LOSSY_FORMATS = ('JPEG', 'MPO')  # MPO: Pillow's name for a JPEG with extra images
# Formats whose writers renumber a palette's indices to the colours used (Pillow's GIF writer by default).
RENUMBERING_FORMATS = ('GIF',)


def present_labels(mask):
    """The sorted object labels present in a label array (not background 0, not void)."""
    return [int(v) for v in np.unique(np.asarray(mask)) if v not in (0, VOID_LABEL)]


def object_labels_of(mask, source):
    """The object labels of a given mask (present_labels), refusing what cannot be a label map; `source` names it."""
    labels = present_labels(mask)
    if len(labels) > MAX_OBJECTS:
        raise UserError(f'{source} has {len(labels)} labels, more than {MAX_OBJECTS}: is it a colour or grey '
                        f'image instead of a label mask (0 = background, 1..N objects)?')
    return labels


def required_object_labels(mask, source):
    """object_labels_of a mask that must give at least one object (a first mask, a mask given to the API)."""
    labels = object_labels_of(mask, source)
    if not labels:
        raise UserError(f'{source} has no object (only background 0 or void 255); '
                        f'label each object with its own value 1, 2, ...')
    return labels


def read_label_mask(path):
    """Read a label mask as a uint8 (H, W) array of label ids.

    Accepts indexed ('P') PNGs, whose pixel values are the labels, and
    grey-level ('L') PNGs holding label ids. A colour (RGB) mask is refused
    with a message saying how to convert it, since its colours are not labels;
    so is a JPEG, whose compression turns a label's edges into other labels, and a GIF, whose writers
    renumber the labels.
    """
    with opened_image(path, 'mask file') as image:
        if image.format in LOSSY_FORMATS:
            raise UserError(f'{path}: mask saved as {image.format}, whose lossy compression changes label values '
                            f'(a 0/255 mask becomes dozens of labels); save the label mask as PNG')
        if image.format in RENUMBERING_FORMATS:
            raise UserError(f'{path}: mask saved as {image.format}, whose writers renumber the labels to the '
                            f'colours used (labels 3 and 7 become 1 and 2); save the label mask as PNG')
        mode = image.mode
        if mode in ('P', 'L'):
            return np.array(image, dtype=np.uint8)
        if mode in ('1', 'I;16', 'I'):
            labels = np.array(image)
            if labels.max(initial=0) > 255:
                raise UserError(f'{path}: label values above 255; a mask holds labels 0..255')
            return labels.astype(np.uint8)
    raise UserError(
        f'{path}: mask is a {mode} colour image, but masks must be indexed (palette) PNGs '
        f'or grey-level PNGs whose values are the object labels (0 = background, 1..N objects); '
        f'convert it, e.g. map each object colour to its label and save with Image.fromarray(labels, "L")')


def label_mask_image(labels, palette=FLAT_PALETTE):
    """A palette ('P') Pillow image of a uint8 label array; `palette` is flat (768 values), the DAVIS one by default."""
    image = Image.fromarray(np.asarray(labels, dtype=np.uint8), mode='P')
    image.putpalette(palette)
    return image


def write_label_mask(path, labels, palette=FLAT_PALETTE):
    """Write a uint8 (H, W) label array as a palette PNG (label_mask_image), atomically."""
    with atomic_path(path) as tmp:
        label_mask_image(labels, palette).save(tmp, format='PNG')
