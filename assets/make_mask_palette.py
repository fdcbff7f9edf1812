"""Write assets/mask_palette.png: a 16x16 indexed PNG (pixel i = index i) carrying the DAVIS palette.

    python -m assets.make_mask_palette        (from the repository root)
"""
import os

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))

from utils.palette import FLAT_PALETTE


def main(path=os.path.join(HERE, 'mask_palette.png')):
    image = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16), mode='P')
    image.putpalette(FLAT_PALETTE)
    image.save(path, format='PNG', optimize=True)
    return path


if __name__ == '__main__':
    print(main())
