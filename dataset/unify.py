"""Convert the static-image pretraining sets into one layout of images and palette masks.

The output (what the pretraining loader reads) is

    DST/JPEGImages/NAME/<stem>.jpg|png   a byte copy of the source image
    DST/Annotations/NAME/<stem>.png      an indexed PNG of the object labels

for NAME in PRETRAIN_SETS. How each source set is read:

- MSRA10K, ECSSD, PASCAL-S: colour (or grey) masks. Every distinct colour whose
  mean channel value is 0 or >= 128 becomes a label 0, 1, 2, ... in sorted colour
  order; colours with a mean in (0, 128) are dropped (left as 0).
- PASCALVOC2012: the images listed in ImageSets/Segmentation/trainval.txt with their
  SegmentationObject masks; values > 20 (the 255 border) are set to 0.
- COCO: val2017 and train2017 instance annotations; per image every annotation with
  area >= 500 becomes the next label, later ones painting over earlier ones; images
  with no such annotation are skipped.

Outputs that already exist are kept (a second run resumes); every file is written
atomically. Images that have no mask are skipped and counted, not an error.
"""
import collections
import contextlib
import dataclasses
import functools
import multiprocessing
import os
import shutil

import numpy as np
from PIL import Image

from dataset.layouts import PRETRAIN_SETS
from utils.cli import print_line
from utils.errors import UserError
from utils.files import atomic_path, make_writable_folder, remove_stale_temporaries
from utils.images import IMAGE_EXTENSIONS, MAX_IMAGE_PIXELS, ImageTooLarge, list_images, opened_image
from utils.masks import write_label_mask
from utils.names import check_plain_name, path_inside, read_name_list
from utils.palette import FLAT_PALETTE

COCO_SPLITS = ('val2017', 'train2017')
COCO_MIN_AREA = 500
VOC_MAX_LABEL = 20
MAX_LABEL = 254  # 255 is reserved for 'void'

# What each set's --src must hold, for the layout error message.
LAYOUTS = {
    'MSRA10K': 'MSRA10K_Imgs_GT/Imgs/ holding <name>.jpg images beside their <name>.png masks',
    'ECSSD': 'images/<name>.jpg and ground_truth_mask/<name>.png',
    'PASCAL-S': 'datasets/imgs/pascal/<name>.jpg and datasets/masks/pascal/<name>.png',
    'PASCALVOC2012': ('ImageSets/Segmentation/trainval.txt, JPEGImages/<name>.jpg and '
                      'SegmentationObject/<name>.png (the VOC2012 folder of VOCdevkit)'),
    'COCO': ('annotations/instances_{val,train}2017.json with the images in '
             'val2017/ and train2017/'),
}


@dataclasses.dataclass(frozen=True)
class ColourSet:
    """A set whose masks are colour images: its image and mask folders (under --src) and image extensions."""
    images: tuple
    masks: tuple
    extensions: tuple = IMAGE_EXTENSIONS


COLOUR_SETS = {
    'MSRA10K': ColourSet(('MSRA10K_Imgs_GT', 'Imgs'), ('MSRA10K_Imgs_GT', 'Imgs'), ('.jpg', '.jpeg')),
    'ECSSD': ColourSet(('images',), ('ground_truth_mask',)),
    'PASCAL-S': ColourSet(('datasets', 'imgs', 'pascal'), ('datasets', 'masks', 'pascal')),
}


@dataclasses.dataclass(frozen=True)
class Item:
    """One image to convert: `to_labels(source)` makes its label map, from a mask path (colour_file_labels,
    voc_file_labels) or, for COCO, from (height, width, segmentations) of its kept annotations."""
    image: str
    stem: str
    to_labels: object
    source: object


@dataclasses.dataclass
class Listing:
    """The items of a set plus the images skipped while listing them."""
    items: list
    # reason -> list of source image paths (or names) skipped for that reason
    skipped: dict = dataclasses.field(default_factory=lambda: collections.defaultdict(list))


@dataclasses.dataclass
class Summary:
    """What unify() did: counts of items written / already there, and skipped ones by reason."""
    name: str
    written: int = 0
    existing: int = 0
    skipped: dict = dataclasses.field(default_factory=lambda: collections.defaultdict(list))

    @property
    def n_skipped(self):
        return sum(len(v) for v in self.skipped.values())

    def report(self):
        """Human-readable lines: totals, then one line per skip reason with a few examples."""
        lines = [f'{self.name}: {self.written} written, {self.existing} already present, '
                 f'{self.n_skipped} skipped']
        for reason, names in sorted(self.skipped.items()):
            examples = ', '.join(os.path.basename(str(n)) for n in names[:3])
            more = ', ...' if len(names) > 3 else ''
            lines.append(f'  skipped {len(names)}: {reason} (e.g. {examples}{more})')
        return lines


# ---------------------------------------------------------------- label maps

def colour_mask_to_labels(mask):
    """Labels of a colour (H, W, C) or grey (H, W) mask array, as int64 (H, W).

    Distinct colours with mean channel value 0 or >= 128 are numbered 0, 1, 2, ...
    in sorted (lexicographic) colour order; colours with mean in (0, 128) map to 0.
    """
    mask = np.asarray(mask)
    if mask.ndim == 2:
        mask = mask[..., None]
    height, width, channels = mask.shape
    colours, inverse = np.unique(mask.reshape(-1, channels), axis=0, return_inverse=True)
    means = colours.astype(np.float64).mean(axis=1)
    keep = (means == 0) | (means >= 128)
    lookup = np.zeros(len(colours), np.int64)
    lookup[keep] = np.arange(int(keep.sum()))
    return lookup[inverse.reshape(-1)].reshape(height, width)


def voc_mask_to_labels(mask):
    """Labels of a VOC SegmentationObject index array: values > 20 (the 255 border) become 0."""
    labels = np.array(mask, dtype=np.int64)
    labels[labels > VOC_MAX_LABEL] = 0
    return labels


def coco_label_mask(segmentations, height, width):
    """int64 (H, W) labels painting each COCO segmentation in turn as labels 1, 2, ...

    segmentations: COCO 'segmentation' values (polygon lists, uncompressed RLE with
    list counts, or compressed RLE with bytes/str counts); later ones paint over earlier.
    """
    mask_utils = _pycocotools_mask()
    labels = np.zeros((height, width), np.int64)
    for label, segmentation in enumerate(segmentations, start=1):
        if isinstance(segmentation, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation.get('counts'), list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = segmentation
        binary = mask_utils.decode(rle)
        if binary.ndim == 3:
            binary = binary.max(axis=2)
        labels[binary.astype(bool)] = label
    return labels


class _Skip(Exception):
    """An item that cannot be converted; the message is the reason, counted in the summary."""


# An image or mask over this is skipped from its header, before any pixel is decoded (a 17 kB PNG may hold
# 12000x12000 pixels, minutes and gigabytes to decode).
TOO_LARGE = f'image or mask over {MAX_IMAGE_PIXELS} pixels (8192x8192)'


@contextlib.contextmanager
def _opened(path, what):
    """opened_image of an item's image or mask; one too large or unreadable is skipped (_Skip)."""
    try:
        with opened_image(path, what) as image:
            yield image
    except ImageTooLarge:
        raise _Skip(TOO_LARGE) from None
    except UserError:
        raise _Skip(f'unreadable {what}') from None


@contextlib.contextmanager
def _mask_image(path):
    """The Pillow image of a mask file, loaded; an unreadable or too large one is skipped (_Skip)."""
    with _opened(path, 'mask') as image:
        image.load()
        yield image


def colour_file_labels(path):
    """colour_mask_to_labels of a colour (or grey) mask file."""
    with _mask_image(path) as image:
        if image.mode in ('P', 'PA', 'RGBA', 'CMYK', 'YCbCr', 'HSV', 'LAB'):
            image = image.convert('RGB')
        elif image.mode in ('1', 'LA'):
            image = image.convert('L')
        return colour_mask_to_labels(np.array(image))


def voc_file_labels(path):
    """voc_mask_to_labels of an indexed SegmentationObject file."""
    with _mask_image(path) as image:
        if image.mode not in ('P', 'L'):
            raise _Skip(f'mask is not an indexed PNG (mode {image.mode})')
        return voc_mask_to_labels(np.array(image))


def coco_item_labels(source):
    """coco_label_mask of a COCO item's (height, width, segmentations), at most MAX_LABEL of them."""
    height, width, segmentations = source
    if height * width > MAX_IMAGE_PIXELS:
        raise _Skip(TOO_LARGE)
    return coco_label_mask(segmentations[:MAX_LABEL], height, width)


def _pycocotools_mask():
    try:
        import pycocotools.mask as mask_utils
    except ImportError:
        raise UserError('COCO conversion needs pycocotools, which is not installed: '
                        'pip install pycocotools') from None
    return mask_utils


def _pycocotools_coco():
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise UserError('COCO conversion needs pycocotools, which is not installed: '
                        'pip install pycocotools') from None
    return COCO


# ---------------------------------------------------------------- palette

def load_palette(path=None):
    """The flat 768-entry palette of an indexed PNG at `path`, or the DAVIS palette if None."""
    if path is None:
        return list(FLAT_PALETTE)
    try:
        with Image.open(path) as image:
            mode, palette = image.mode, image.getpalette()
    except FileNotFoundError:
        raise UserError(f'{path}: palette file not found') from None
    except OSError as error:
        raise UserError(f'{path}: not a readable image ({error})') from None
    if mode != 'P' or not palette:
        raise UserError(f'{path}: the palette must be an indexed (mode P) PNG, but it is mode {mode}')
    palette = list(palette[:768])
    return palette + [0] * (768 - len(palette))


# ---------------------------------------------------------------- listing the sets

def _layout_error(name, src):
    return UserError(f'{src}: not a {name} folder; expected {LAYOUTS[name]} inside it')


def _colour_listing(image_dir, mask_dir, exts):
    listing = Listing(items=[])
    for name in list_images(image_dir, exts):
        stem = os.path.splitext(name)[0]
        mask = os.path.join(mask_dir, stem + '.png')
        if os.path.isfile(mask):
            listing.items.append(Item(os.path.join(image_dir, name), stem, colour_file_labels, mask))
        else:
            listing.skipped['image without a mask'].append(os.path.join(image_dir, name))
    return listing


def colour_items(name, src):
    """Listing of the colour-mask set `name` (COLOUR_SETS): images with a mask of the same stem."""
    layout = COLOUR_SETS[name]
    images, masks = os.path.join(src, *layout.images), os.path.join(src, *layout.masks)
    if not (os.path.isdir(images) and os.path.isdir(masks)):
        raise _layout_error(name, src)
    return _colour_listing(images, masks, layout.extensions)


def voc_items(src):
    """Listing of PASCAL VOC 2012: trainval.txt names, JPEGImages/<n>.jpg, SegmentationObject/<n>.png."""
    listed = os.path.join(src, 'ImageSets', 'Segmentation', 'trainval.txt')
    images, masks = os.path.join(src, 'JPEGImages'), os.path.join(src, 'SegmentationObject')
    if not (os.path.isfile(listed) and os.path.isdir(images) and os.path.isdir(masks)):
        raise _layout_error('PASCALVOC2012', src)
    names = read_name_list(listed)
    listing = Listing(items=[])
    for stem in names:
        image = os.path.join(images, stem + '.jpg')
        mask = os.path.join(masks, stem + '.png')
        if not os.path.isfile(image):
            listing.skipped['listed in trainval.txt but its image is missing'].append(image)
        elif not os.path.isfile(mask):
            listing.skipped['image without a mask'].append(image)
        else:
            listing.items.append(Item(image, stem, voc_file_labels, mask))
    return listing


def coco_items_from(coco, image_dir, listing=None, min_area=COCO_MIN_AREA):
    """Add the items of one split, given its pycocotools COCO object and image folder.

    Per image, the annotations with area >= min_area, in annotation order, become
    labels 1, 2, ...; images with none are recorded as skipped.
    """
    listing = listing if listing is not None else Listing(items=[])
    for image_id in sorted(coco.getImgIds()):
        info = coco.imgs[image_id]
        file_name = check_plain_name(info['file_name'], f'COCO annotations of {image_dir} (file_name of image {image_id})')
        path = os.path.join(image_dir, file_name)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id], iscrowd=None))
        kept = [ann['segmentation'] for ann in anns
                if ann.get('area', 0) >= min_area and ann.get('segmentation')]
        if not kept:
            listing.skipped[f'no annotation with area >= {min_area}'].append(path)
            continue
        stem = os.path.splitext(file_name)[0]
        listing.items.append(Item(path, stem, coco_item_labels, (int(info['height']), int(info['width']), kept)))
    return listing


def coco_items(src, splits=COCO_SPLITS, min_area=COCO_MIN_AREA):
    """Listing of COCO: SRC/annotations/instances_<split>.json with images in SRC/<split>/.

    Every split present is used; a missing one is reported on stderr, and having
    none is a layout error.
    """
    present = [s for s in splits
               if os.path.isfile(os.path.join(src, 'annotations', f'instances_{s}.json'))]
    if not present:
        raise _layout_error('COCO', src)
    for split in present:
        if not os.path.isdir(os.path.join(src, split)):
            raise UserError(f'{src}: has annotations/instances_{split}.json but no {split}/ image '
                            f'folder; expected {LAYOUTS["COCO"]} inside it')
    coco_class = _pycocotools_coco()
    _pycocotools_mask()
    for split in splits:
        if split not in present:
            print_line(f'COCO: {src}/annotations/instances_{split}.json not found; '
                       f'converting {", ".join(present)} only')
    listing = Listing(items=[])
    for split in present:
        coco = coco_class(os.path.join(src, 'annotations', f'instances_{split}.json'))
        coco_items_from(coco, os.path.join(src, split), listing, min_area)
    return listing


LISTERS = {
    **{name: functools.partial(colour_items, name) for name in COLOUR_SETS},
    'PASCALVOC2012': voc_items,
    'COCO': coco_items,
}


def list_items(name, src):
    """The Listing of set `name` under `src` (UserError if src lacks that set's layout)."""
    if name not in LISTERS:
        raise UserError(f'unknown set {name!r}; choose one of {", ".join(PRETRAIN_SETS)}')
    if not os.path.isdir(src):
        raise UserError(f'{src}: folder not found; expected a {name} folder with {LAYOUTS[name]}')
    return LISTERS[name](src)


# ---------------------------------------------------------------- converting

def output_paths(item, dst, name):
    """(image, mask) output paths of an item."""
    ext = os.path.splitext(item.image)[1].lower()
    ext = '.jpg' if ext == '.jpeg' else ext
    return (path_inside(dst, 'JPEGImages', name, item.stem + ext),
            path_inside(dst, 'Annotations', name, item.stem + '.png'))


def item_labels(item):
    """The uint8 label map of an item (raises _Skip with a reason when it cannot be made). The image's size
    is read from its header first: a mask is decoded only for an image that is read."""
    with _opened(item.image, 'image') as image:
        size = image.size
    labels = item.to_labels(item.source)
    if labels.max(initial=0) > MAX_LABEL:
        raise _Skip(f'more than {MAX_LABEL} labels in the mask')
    if size != (labels.shape[1], labels.shape[0]):
        raise _Skip('mask size differs from the image size')
    return labels.astype(np.uint8)


def convert_item(item, dst, name, palette):
    """Convert one item; returns ('written' | 'existing' | 'skipped', reason or None)."""
    image_out, mask_out = output_paths(item, dst, name)
    if os.path.isfile(image_out) and os.path.isfile(mask_out):
        return 'existing', None
    try:
        labels = item_labels(item)
    except _Skip as skip:
        return 'skipped', str(skip)
    if not os.path.isfile(image_out):
        with atomic_path(image_out) as tmp:
            shutil.copyfile(item.image, tmp)
    write_label_mask(mask_out, labels, palette)
    return 'written', None


def _convert_task(item, dst, name, palette):
    return item, convert_item(item, dst, name, palette)


def unify(name, src, dst, palette=None, workers=1, progress=True):
    """Convert set `name` from `src` into `dst`; returns a Summary.

    palette: flat 768-entry palette list (default: the DAVIS palette).
    workers: processes in the pool (1 = convert in this process).
    """
    listing = list_items(name, src)
    palette = list(FLAT_PALETTE) if palette is None else list(palette)
    summary = Summary(name)
    for reason, names in listing.skipped.items():
        summary.skipped[reason].extend(names)
    folders = [make_writable_folder(os.path.join(dst, kind, name)) for kind in ('JPEGImages', 'Annotations')]
    for folder in folders:
        remove_stale_temporaries(folder)

    task = functools.partial(_convert_task, dst=dst, name=name, palette=palette)
    items = listing.items
    bar = _progress(len(items), name, progress)
    try:
        if workers <= 1 or len(items) <= 1:
            results = map(task, items)
            _collect(results, summary, bar)
        else:
            chunksize = max(1, min(64, len(items) // (workers * 8)))
            with multiprocessing.Pool(workers) as pool:
                _collect(pool.imap_unordered(task, items, chunksize=chunksize), summary, bar)
    except BaseException:
        for folder in folders:  # what workers ended mid-write left (leaving the pool ended them)
            remove_stale_temporaries(folder)
        raise
    finally:
        bar.close()
    return summary


def _collect(results, summary, bar):
    for item, (status, reason) in results:
        if status == 'written':
            summary.written += 1
        elif status == 'existing':
            summary.existing += 1
        else:
            summary.skipped[reason].append(item.image)
        bar.update(1)


def _progress(total, name, enabled):
    from tqdm import tqdm
    return tqdm(total=total, desc=name, unit='img', disable=not enabled, dynamic_ncols=True)


__all__ = [
    'LAYOUTS', 'COLOUR_SETS', 'Item', 'Listing', 'Summary', 'colour_mask_to_labels', 'voc_mask_to_labels',
    'coco_label_mask', 'colour_file_labels', 'voc_file_labels', 'coco_item_labels', 'load_palette',
    'colour_items', 'voc_items', 'coco_items', 'coco_items_from', 'list_items', 'output_paths', 'item_labels',
    'convert_item', 'unify',
]
