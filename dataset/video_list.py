"""eval.py --videos LIST: your own videos, one a line of a CSV file, each with its first frame's mask.

    # video,mask[,name]: a video file or a folder of frames, its first frame's label mask, an output name
    clips/walk.mp4,masks/walk.png
    "frames/two, three",masks/23.png,two_three

Fields are read as the csv module reads them (quotes around a field with a comma); blank lines, lines starting
with '#' and a header line `video,mask[,name]` are skipped. Relative paths are taken from the list's folder.
The output name defaults to the video's file name without its extension (a folder's name), and must be one
plain name, once in the list. Every line is checked (each video opened, each mask read) before a model loads;
all problems are reported together, one line each naming the list's line.
"""
import csv
import os

from dataset.eval_sets import Sequence, open_video, video_name
from utils.errors import UserError
from utils.names import plain_name_problem

FIELDS = ('video', 'mask', 'name')
_SHOWN_PROBLEMS = 20


def _rows(path):
    """[(line number, fields)] of the list's rows that are not blank, comments or the header."""
    rows = []
    try:
        with open(path, encoding='utf-8-sig', newline='') as f:  # -sig: a spreadsheet's byte-order mark
            reader = csv.reader(f, skipinitialspace=True)
            for fields in reader:
                if not ''.join(fields).strip() or fields[0].lstrip().startswith('#'):
                    continue
                if not rows and tuple(field.strip().lower() for field in fields) in (FIELDS[:2], FIELDS):
                    continue
                rows.append((reader.line_num, fields))
    except FileNotFoundError:
        raise UserError(f'{path}: video list not found') from None
    except UnicodeDecodeError as error:
        raise UserError(f'{path}: not UTF-8 text ({error.reason} at byte {error.start}); save the list as UTF-8 '
                        f'CSV') from None
    except csv.Error as error:
        raise UserError(f'{path}, line {reader.line_num}: not CSV as Python\'s csv module reads it ({error}); '
                        f'quote a field that holds a comma or a quote') from None
    except OSError as error:
        raise UserError(f'{path}: cannot read the video list ({error.strerror or error})') from None
    return rows


def _problems_text(path, problems):
    shown = problems[:_SHOWN_PROBLEMS]
    if len(problems) > len(shown):
        shown.append(f'{path}: {len(problems) - len(shown)} more lines with problems')
    return '\n'.join(shown)


def read_video_list(path, size=None):
    """The videos of list `path` as sources for the video runner (dataset.eval_sets.open_video), in the list's
    order, at the working size `size`; a UserError with one line per problem when any line has one."""
    folder = os.path.dirname(path)
    sources, problems, first_line = [], [], {}
    for line, fields in _rows(path):
        where = f'{path}, line {line}'
        if len(fields) not in (2, 3) or not fields[0] or not fields[1]:
            problems.append(f'{where}: expected video,mask[,name] (a video file or frame folder, its first '
                            f'frame\'s mask, an optional output name), got {fields}')
            continue
        video, mask = (os.path.join(folder, field) for field in fields[:2])
        name = fields[2] if len(fields) == 3 and fields[2] else video_name(video)
        problem = plain_name_problem(name)
        if problem is not None:
            problems.append(f'{where}: output name {name!r}: {problem} (in a third field)')
            continue
        if name in first_line:
            problems.append(f'{where}: output name {name!r} is also the one of line {first_line[name]}; give one '
                            f'of them another name in a third field')
            continue
        first_line[name] = line
        try:
            sources.append(open_video(video, mask, size, name))
        except UserError as error:
            problems.append(f'{where}: {error}')
    if problems:
        raise UserError(_problems_text(path, problems))
    if not sources:
        raise UserError(f'{path}: lists no video; write one video a line: video,mask[,name]')
    return sources


def frame_folders(sources):
    """The frame folders among the list's videos: inputs that no output may be written in."""
    return [os.path.dirname(source.frame_paths[0]) for source in sources if isinstance(source, Sequence)]
