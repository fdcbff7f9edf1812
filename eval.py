"""Evaluate AFB-URR: DAVIS 2017 val (--level 1), YouTube-VOS 2018 valid (--level 2),
long videos or your own videos in that layout (--level 3), one video (--video) or a list of them (--videos).

    python eval.py --level 1 --dataset DAVIS --resume davis17 --score
    python eval.py --video clip.mp4 --mask first.png --resume davis17 --viz
    python eval.py --videos videos.csv --resume davis17 --shard 2/4    # lines video,mask[,name]; every 4th from the 2nd

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
    from dataset.list_run import run_videos, summary_name, write_summary
    from dataset.video_list import frame_folders, read_video_list
    from model.inference.options import (DEFAULT_BANK_OPTIONS, SIZE_FLAG_HELP, BankOptions, bank_option_problem,
                                         size_flag_problem, working_size_of_flag)
    from model.inference.precision import DEFAULT_PRECISION, PRECISION_HELP, PRECISIONS, check_precision
    from model.inference.video_runner import OutputFolders, is_done, segment_video
    from model.network.loading import load_model
    from utils.common_flags import (CHECKPOINT_CHOICES, add_device_flags, add_resume_flag, add_workers_flag,
                                    chosen_device)
    from utils.device import process_device
    from utils.distributed import gather_from_all, process_group
    from utils.download import resolve_checkpoint
    from utils.errors import UserError
    from utils.files import make_writable_folder
    from utils.names import path_inside, plain_name_problem, refuse_inside
    from utils.run_record import check_run_record, file_digest, results_besides, write_run_record
    from utils.shards import parse_shard, process_share, shard_from_slurm, shard_problem


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
    added.add_argument('--videos', metavar='LIST',
                       help='a CSV file of your own videos, one a line: video,mask[,name] (a video file or frame '
                            'folder, its first frame\'s mask, an optional output name; paths relative to the list\'s '
                            'folder); each is written as --video writes it, a summary.csv at the end')
    added.add_argument('--size', type=checked(int, size_flag_problem), help=f'with --video(s): {SIZE_FLAG_HELP}')
    added.add_argument('--shard', metavar='K/N', type=checked(str, shard_problem),
                       help='run only shard K of N (from 1) of the videos of --videos or --level: every N-th video '
                            'from the K-th, as independent processes or jobs; inside a Slurm job array the task\'s '
                            'place in the array chooses it (--shard 1/1 runs every video)')
    added.add_argument('--export', metavar='KIND[,KIND...]', help=EXPORT_HELP,
                       type=checked(parse_export_kinds, partial(export_kinds_problem, choices=EXPORTS)))
    args = parser.parse_args(argv)
    own = own_videos(args)
    if args.video is not None and args.videos is not None:
        parser.error('--video and --videos: give one video, or a list of them')
    if not own and args.level is None:
        parser.error('one of --level, --video or --videos is required')
    if own and args.level is not None:
        parser.error('--level runs a dataset; give it without --video or --videos')
    if args.video is not None and not args.mask:
        parser.error('--video needs --mask, the first frame\'s label mask')
    if args.videos is not None and args.mask:
        parser.error('--mask is for --video; the --videos list gives each video\'s mask')
    if args.video is not None and (args.score or args.score_only):
        parser.error('--score: a --video has no ground truth to score against; lay the video out as a long '
                     'video with its annotations and use --level 3 --score')
    if args.videos is not None and (args.score or args.score_only):
        parser.error('--score: the --videos have no ground truth to score against; lay them out as long videos '
                     'with their annotations and use --level 3 --score')
    if args.size is not None and not own:
        parser.error('--size is for --video and --videos: the --level protocols run at their released frame sizes')
    if not own and not args.dataset:
        parser.error('--dataset is required with --level')
    if args.shard is not None and (args.video is not None or args.score_only):
        parser.error('--shard splits the videos of --videos or --level; it has no use with '
                     f'{"--video" if args.video is not None else "--score-only, which scores every video"}')
    if args.videos is not None and args.sequences is not None:
        parser.error('--sequences is for --level; list only the videos to run in the --videos file')
    if not args.score_only and not args.resume:
        parser.error(f'--resume is required ({CHECKPOINT_CHOICES})')
    if args.sequences is not None and not selected_names(args.sequences):
        parser.error(f'--sequences {args.sequences!r}: names no video; give comma-separated video names')
    if args.score_only and not args.results:
        parser.error('--score-only needs --results, the folder to score')
    if args.score_only and args.export:
        parser.error('--export: --score-only writes no results to export; drop --score-only')
    return args


def own_videos(args):
    """Whether the run is on your own videos (--video or --videos), not a --level dataset."""
    return args.video is not None or args.videos is not None


def model_name(args):
    name = VIDEO_MODEL_NAME if own_videos(args) else LEVELS[args.level].model_name
    return f'{name}_{args.prefix}' if args.prefix else name


def bank_options(args):
    level_rate = DEFAULT_BANK_OPTIONS.update_rate if own_videos(args) else LEVELS[args.level].update_rate
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


def input_folders(args, source):
    """The folders eval.py reads and must never write in: the dataset's frames and annotations, or the
    frame folders of --video and --videos."""
    if args.video:
        return [args.video] if os.path.isdir(args.video) else []
    if args.videos:
        return frame_folders(source)
    return dataset_input_folders(args.dataset)


def check_output_roots(args, source):
    """Refuse results inside the inputs; create the results folder (and with --viz the overlay folder, with
    --export the export folder) and prove them writable."""
    roots = ([results_root(args)] + ([overlay_root(args)] if args.viz else [])
             + ([export_root(args)] if args.export else []))
    for root in roots:
        refuse_inside(root, input_folders(args, source), 'choose an --output outside the dataset')
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
        'level': 'video' if own_videos(args) else args.level,
        'budget': options.budget,
        'update_rate': options.update_rate,
        'merge_thres': options.merge_thres,
        'precision': args.precision,
        'size': working_size_of_flag(args.size) if own_videos(args) else None,  # None: the level's released sizes
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


def chosen_shard(args):
    """(the Shard of --shard, else of the Slurm array task running a --videos or --level run, or None; the line
    saying that Slurm chose it, or None)."""
    if args.shard is not None:
        return parse_shard(args.shard), None
    if args.video is not None or args.score_only:
        return None, None
    return shard_from_slurm(os.environ) or (None, None)


def export(args, source, folders, segmented=True, frame_count=None):
    """Write the --export kinds of a video: all of them when it was just segmented, else those missing."""
    folder = path_inside(export_root(args), source.name)
    kinds = args.export if segmented else missing_kinds(folder, args.export)
    if kinds:
        write_exports(folder, kinds, segmented_clip(source, folders.masks, frame_count))
        print(f'{source.name}: exported {", ".join(OUTPUTS[kind] for kind in kinds)} in {folder}')


def run_dataset(args, sequences, model, process, shard):
    level, options = LEVELS[args.level], bank_options(args)
    frames = seconds = 0
    for sequence in process_share(sequences, shard, process.rank, process.world_size):
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


def run_video_list(args, sources, model, process, shard):
    """The --videos of this process, then the summary of the shard's (or every) video, written by the main
    process; a video that failed makes the run fail at the end."""
    rows = run_videos(process_share(sources, shard, process.rank, process.world_size), model,
                      partial(output_folders, args), bank_options(args), args.workers, args.precision, args.overwrite,
                      partial(export, args) if args.export else None)
    position = {source.name: index for index, source in enumerate(sources)}
    rows = sorted((row for rows_of_one in gather_from_all(rows) for row in rows_of_one),
                  key=lambda row: position[row.video])
    summary = os.path.join(results_root(args), summary_name(shard))
    if process.is_main:
        write_summary(summary, rows)
        print(f'summary of {len(rows)} videos in {summary}')
    failed = [row.video for row in rows if row.failed]
    if failed:
        raise UserError(f'{len(failed)} of {len(rows)} videos failed ({", ".join(failed[:3])}'
                        f'{" ..." if len(failed) > 3 else ""}; the error lines above and {summary} say why); fix '
                        f'them and rerun the same command: finished videos are skipped')


def read_sources(args):
    """The videos to run, every one checked: --video's, the --videos list's, or the level's."""
    if args.video:
        return open_video(args.video, args.mask, working_size_of_flag(args.size))
    if args.videos:
        return read_video_list(args.videos, working_size_of_flag(args.size))
    return select_sequences(args)


def evaluate(args):
    with process_group() as process:
        if args.score_only:
            score(args, select_sequences(args), args.results, process)
            return
        shard, shard_line = chosen_shard(args)
        if shard_line and process.is_main:
            print(shard_line)
        if shard and shard.count > 1 and args.score:
            raise UserError(f'--score: this run is shard {shard} of the videos; once every shard has finished, score '
                            f'them all with --score-only --results {results_root(args)} (and the same --level and '
                            f'--dataset)')
        # Every input, then the output folders, are checked before the model loads.
        source = read_sources(args)
        check_output_roots(args, source)
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
        elif args.videos:
            run_video_list(args, source, model, process, shard)
        else:
            run_dataset(args, source, model, process, shard)
        if process.is_main:
            print(f'done in {time.perf_counter() - start:.1f} s')


def main(argv=None):
    args = parse_args(argv)
    return run_command(lambda: evaluate(args), 'finished videos are kept; rerun the same command to continue')

if __name__ == '__main__':
    sys.exit(main())
