"""The DAVIS / PASCAL VOC colour map of indexed ('P') mask PNGs."""


def _voc_colour(index):
    r = g = b = 0
    for bit in range(8):
        r |= ((index >> (3 * bit)) & 1) << (7 - bit)
        g |= ((index >> (3 * bit + 1)) & 1) << (7 - bit)
        b |= ((index >> (3 * bit + 2)) & 1) << (7 - bit)
    return r, g, b


# 256 (r, g, b) triples: label i is drawn in PALETTE[i]; 0 is black, 255 (void) is near white.
PALETTE = tuple(_voc_colour(i) for i in range(256))
# The flat 768-entry list Pillow's Image.putpalette expects.
FLAT_PALETTE = [channel for colour in PALETTE for channel in colour]
