"""Evaluate AFB-URR: DAVIS 2017 val (--level 1), YouTube-VOS 2018 valid (--level 2),
long videos or your own videos in that layout (--level 3), or one video (--video).

    python eval.py --level 1 --dataset DAVIS --resume davis17 --score
    python eval.py --video clip.mp4 --mask first.png --resume davis17 --viz

Stopped by Ctrl-C or SIGTERM, it finishes the files being written, keeps finished videos and
exits with status 130; a rerun continues and removes what killed runs left behind.
"""
import argparse
import os
import sys
import time
from functools import partial

from utils.cli import OneLineParser, checked, quiet_interrupts, run_command

with quiet_interrupts():  # Ctrl-C while torch loads: one line and status 130, no traceback
    from dataset import scoring
    from dataset.eval_sets import open_video
    from dataset.exports import (EXPORT_KINDS, OUTPUTS, export_kinds_problem, missing_kinds, parse_export_kinds,
                                 segmented_clip, write_exports)
    from dataset.layouts import dataset_input_folders
    from dataset.levels import LEVELS, VIDEO_MODEL_NAME
    from model.inference.options import (DEFAULT_BANK_OPTIONS, SIZE_FLAG_HELP, BankOptions, bank_option_problem,
                                         size_flag_problem, working_size_of_flag)
    from model.inference.precision import DEFAULT_PRECISION, PRECISION_HELP, PRECISIONS, check_precision
    from model.inference.video_runner import OutputFolders, is_done, segment_video
    from model.network.loading import load_model
    from utils.common_flags import (CHECKPOINT_CHOICES, add_device_flags, add_resume_flag, add_workers_flag,
                                    chosen_device)
    from utils.device import process_device
    from utils.distributed import process_group
    from utils.download import resolve_checkpoint
    from utils.files import make_writable_folder
    from utils.names import path_inside, plain_name_problem, refuse_inside
    from utils.run_record import check_run_record, file_digest, results_besides, write_run_record


# The results folder holds the palette PNGs: --export offers the other kinds.
EXPORTS = tuple(kind for kind in EXPORT_KINDS if kind != 'palette')
EXPORT_HELP = ('also write each video\'s exports in OUTPUT/export/<model name>/<video>/: objects (objects/<label>/: '
               'a black-and-white PNG per object and frame), rgba (rgba/<label>/: the frames with each object\'s '
               'alpha, for video editors), coco (coco.json: one RLE segmentation per object per frame), mp4 '
               '(overlay.mp4 at the video\'s frame rate); a rerun writes the kinds missing for videos already done')


def _bank_flag(name, convert):
    return checked(convert, partial(bank_option_problem, name))


def parse_args(argv=None):
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    released = parser.add_argument_group('released flags')
    released.add_argument('--level', type=int, choices=sorted(LEVELS),
                          help='1: DAVIS 2017 val, 2: YouTube-VOS 2018 valid, 3: long videos / your own videos')
    released.add_argument('--budget', type=_bank_flag('budget', int),
                          default=DEFAULT_BANK_OPTIONS.budget,
                          help='feature bank budget over all objects (default %(default)s)')
    released.add_argument('--viz', action='store_true', help='also write overlays and an overlay MP4 per video')
    released.add_argument('--dataset', help='dataset root folder')
    add_resume_flag(released, 'checkpoint')
    released.add_argument('--prefix', type=checked(str, plain_name_problem),
                          help='appended to the output folder name as _PREFIX (one plain name)')
    released.add_argument('--update-rate', type=_bank_flag('update_rate', float),
                          help='merge update rate, in (0, 1] (default: the level\'s, 0.1 for level 1 and --video, '
                               '0.05 for levels 2 and 3 as in the paper)')
    released.add_argument('--merge-thres', type=_bank_flag('merge_thres', float),
                          default=DEFAULT_BANK_OPTIONS.merge_thres,
                          help='cosine similarity above which features merge, in [-1, 1] (default %(default)s)')
    added = parser.add_argument_group('added flags')
    add_device_flags(released, added)
    added.add_argument('--output', default='output',
                       help='results root (default output); overlays go to OUTPUT/overlay/')
    added.add_argument('--sequences', help='comma-separated subset of the videos to run')
    added.add_argument('--overwrite', action='store_true',
                       help='redo videos whose outputs are all written (default: skip them), also into a results '
                            'folder of another checkpoint or options (run.json)')
    added.add_argument('--precision', choices=PRECISIONS, default=DEFAULT_PRECISION, help=PRECISION_HELP)
    add_workers_flag(added, 'frame-decoding worker processes per video', default=2)
    added.add_argument('--score', action='store_true', help='score the results against the annotations (DAVIS protocol)')
    added.add_argument('--score-only', action='store_true', help='only score an existing --results folder against --dataset')
    added.add_argument('--results', help='with --score-only: folder with <video>/<frame>.png results')
    added.add_argument('--video', help='a video file (MP4/AVI/MOV) or a folder of frames to segment')
    added.add_argument('--mask', help="with --video: the first frame's label mask (palette or grey-level PNG)")
    added.add_argument('--size', type=checked(int, size_flag_problem), help=f'with --video: {SIZE_FLAG_HELP}')
    added.add_argument('--export', metavar='KIND[,KIND...]', help=EXPORT_HELP,
                       type=checked(parse_export_kinds, partial(export_kinds_problem, choices=EXPORTS)))
    args = parser.parse_args(argv)
    if args.video is None and args.level is None:
        parser.error('one of --level or --video is required')
    if args.video is not None and not args.mask:
        parser.error('--video needs --mask, the first frame\'s label mask')
    if args.video is not None and (args.score or args.score_only):
        parser.error('--score: a --video has no ground truth to score against; lay the video out as a long '
                     'video with its annotations and use --level 3 --score')
    if args.size is not None and args.video is None:
        parser.error('--size is for --video: the --level protocols run at their released frame sizes')
    if args.video is None and not args.dataset:
        parser.error('--dataset is required with --level')
    if not args.score_only and not args.resume:
        parser.error(f'--resume is required ({CHECKPOINT_CHOICES})')
    if args.sequences is not None and not selected_names(args.sequences):
        parser.error(f'--sequences {args.sequences!r}: names no video; give comma-separated video names')
    if args.score_only and not args.results:
        parser.error('--score-only needs --results, the folder to score')
    if args.score_only and args.export:
        parser.error('--export: --score-only writes no results to export; drop --score-only')
    return args


def model_name(args):
    name = VIDEO_MODEL_NAME if args.video else LEVELS[args.level].model_name
    return f'{name}_{args.prefix}' if args.prefix else name


def bank_options(args):
    level_rate = LEVELS[args.level].update_rate if args.video is None else DEFAULT_BANK_OPTIONS.update_rate
    return BankOptions(args.budget, level_rate if args.update_rate is None else args.update_rate, args.merge_thres)


def results_root(args):
    return os.path.join(args.output, model_name(args))


def overlay_root(args):
    return os.path.join(args.output, 'overlay', model_name(args))


def export_root(args):
    return os.path.join(args.output, 'export', model_name(args))


def output_folders(args, video_name):
    """OUTPUT/<model name>/<video>/ for the masks, OUTPUT/overlay/<model name>/<video>/ (and .mp4) with --viz."""
    overlays = path_inside(overlay_root(args), video_name) if args.viz else None
    return OutputFolders(path_inside(results_root(args), video_name), overlays)


def input_folders(args):
    """The folders eval.py reads and must never write in: the dataset's frames and annotations, or the
    --video frame folder."""
    if args.video:
        return [args.video] if os.path.isdir(args.video) else []
    return dataset_input_folders(args.dataset)


def check_output_roots(args):
    """Refuse results inside the inputs; create the results folder (and with --viz the overlay folder, with
    --export the export folder) and prove them writable."""
    roots = ([results_root(args)] + ([overlay_root(args)] if args.viz else [])
             + ([export_root(args)] if args.export else []))
    for root in roots:
        refuse_inside(root, input_folders(args), 'choose an --output outside the dataset')
    for root in roots:
        make_writable_folder(root)


def selected_names(sequences):
    return [name for name in sequences.split(',') if name]


def run_record(args, checkpoint):
    """What makes this run's results (utils.run_record): a rerun into the same folder that differs in any entry
    would mix its results with these, so it is refused."""
    options = bank_options(args)
    return {
        'checkpoint': file_digest(checkpoint),
        'level': args.level if args.video is None else 'video',
        'budget': options.budget,
        'update_rate': options.update_rate,
        'merge_thres': options.merge_thres,
        'precision': args.precision,
        'size': working_size_of_flag(args.size) if args.video else None,  # None: the level's released sizes
    }


def check_record(args, record):
    """Refuse to mix this run's results with another run's in one folder: a rerun that differs, unless it
    replaces them all (--overwrite for every video there)."""
    root = results_root(args)
    if not args.overwrite:
        check_run_record(root, record, 'pass --overwrite to replace them, or choose another --output (or --prefix)')
    elif args.sequences is not None:
        others = results_besides(root, selected_names(args.sequences))
        if others:
            check_run_record(root, record, f'--overwrite with --sequences would keep that run\'s results of '
                                           f'{", ".join(others[:3])}{" ..." if len(others) > 3 else ""} beside these; '
                                           f'drop --sequences to redo every video, or choose another --output')


def select_sequences(args):
    """The level's videos, only those of --sequences when given (the others are not read)."""
    wanted = selected_names(args.sequences) if args.sequences is not None else None
    return LEVELS[args.level].read_sequences(args.dataset, wanted)


def score(args, sequences, results_dir, process):
    protocol = LEVELS[args.level].protocol
    if protocol is None:
        if process.is_main:
            print('YouTube-VOS 2018 valid has no public annotations: submit the results folder '
                  f'{results_dir} (zipped) to the challenge server to score it')
        return
    scored = scoring.score_sequences(results_dir, sequences, protocol, process)
    if scored is not None:
        objects, summary, csv_paths = scored
        print(scoring.format_results_table(objects, summary))
        print('wrote ' + ' and '.join(csv_paths))


def export(args, source, folders, segmented=True, frame_count=None):
    """Write the --export kinds of a video: all of them when it was just segmented, else those missing."""
    folder = path_inside(export_root(args), source.name)
    kinds = args.export if segmented else missing_kinds(folder, args.export)
    if kinds:
        write_exports(folder, kinds, segmented_clip(source, folders.masks, frame_count))
        print(f'{source.name}: exported {", ".join(OUTPUTS[kind] for kind in kinds)} in {folder}')


def run_dataset(args, sequences, model, process):
    level, options = LEVELS[args.level], bank_options(args)
    frames = seconds = 0
    for sequence in sequences[process.rank::process.world_size]:
        folders = output_folders(args, sequence.name)
        if not args.overwrite and is_done(sequence, folders):
            print(f'{sequence.name}: outputs already written, skipped (--overwrite redoes it)')
            if args.export:
                export(args, sequence, folders, segmented=False)
            continue
        report = segment_video(model, sequence, folders, options, level.update_before(sequence), args.workers,
                               precision=args.precision)
        print(report.summary())
        if args.export:
            export(args, sequence, folders)
        frames, seconds = frames + report.frames, seconds + report.seconds
    if frames:
        print(f'total: {frames} frames in {seconds:.1f} s, {frames / seconds:.2f} fps')
    if args.score:
        score(args, sequences, results_root(args), process)


def run_video(args, source, model):
    folders = output_folders(args, source.name)
    report = segment_video(model, source, folders, bank_options(args), workers=args.workers,
                           precision=args.precision)
    print(report.summary())
    if args.export:
        export(args, source, folders, frame_count=report.frames)
    print(f'masks in {folders.masks}' + (f', overlay video {folders.overlay_video}' if folders.overlays else ''))


def evaluate(args):
    with process_group() as process:
        if args.score_only:
            score(args, select_sequences(args), args.results, process)
            return
        # Every input, then the output folders, are checked before the model loads.
        source = (open_video(args.video, args.mask, working_size_of_flag(args.size)) if args.video
                  else select_sequences(args))
        check_output_roots(args)
        name, flag = chosen_device(args.device, args.gpu)
        device = process_device(name, process, flag)
        check_precision(args.precision, device)
        checkpoint = resolve_checkpoint(args.resume)
        record = run_record(args, checkpoint)
        check_record(args, record)
        model = load_model(checkpoint, device)
        if process.is_main:
            write_run_record(results_root(args), record)
        start = time.perf_counter()
        if args.video:
            run_video(args, source, model)
        else:
            run_dataset(args, source, model, process)
        if process.is_main:
            print(f'done in {time.perf_counter() - start:.1f} s')


def main(argv=None):
    args = parse_args(argv)
    return run_command(lambda: evaluate(args), 'finished videos are kept; rerun the same command to continue')

if __name__ == '__main__':
    sys.exit(main())
