"""Evaluate AFB-URR: DAVIS 2017 val (--level 1), YouTube-VOS 2018 valid (--level 2),
long videos or your own videos in that layout (--level 3), or one video (--video).

    python eval.py --level 1 --dataset DAVIS --resume davis17 --score
    python eval.py --video clip.mp4 --mask first.png --resume davis17 --viz
"""
import argparse
import os
import sys
import time

from dataset import eval_sets
from dataset.frame_stream import stream_video_file, video_fps, video_frame_count
from model.evaluation import OutputFolders, is_done, segment_frames, segment_sequence
from model.loading import load_model
from model.propagation import BankOptions, object_labels_of
from utils import metrics
from utils.device import device_name, select_device
from utils.distributed import gather_from_all, process_group
from utils.download import resolve_checkpoint
from utils.errors import UserError
from utils.masks import read_label_mask
from utils.names import path_inside

LEVELS = {
    1: ('AFB-URR_DAVIS_17val', eval_sets.davis_sequences, 'davis'),
    2: ('AFB-URR_YoutubeVOS', eval_sets.youtube_sequences, None),
    3: ('AFB-URR_LongVideo', eval_sets.long_video_sequences, 'long'),
}
VIDEO_MODEL_NAME = 'AFB-URR_Video'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    released = parser.add_argument_group('released flags')
    released.add_argument('--gpu', type=int, help='GPU index; -1 runs on the CPU (default: GPU 0 if CUDA is present, else the CPU)')
    released.add_argument('--level', type=int, choices=sorted(LEVELS),
                          help='1: DAVIS 2017 val, 2: YouTube-VOS 2018 valid, 3: long videos / your own videos')
    released.add_argument('--budget', type=int, default=300000, help='feature bank budget over all objects (default 300000)')
    released.add_argument('--viz', action='store_true', help='also write overlays and an overlay MP4 per video')
    released.add_argument('--dataset', help='dataset root folder')
    released.add_argument('--resume', help='checkpoint: a path, a URL, or pretrain / davis17 / youtube18')
    released.add_argument('--prefix', help='appended to the output folder name as _PREFIX')
    released.add_argument('--update-rate', type=float, default=0.1, help='merge update rate (default 0.1; 0.05 for levels 2 and 3 in the paper)')
    released.add_argument('--merge-thres', type=float, default=0.95, help='cosine similarity above which features merge (default 0.95)')
    added = parser.add_argument_group('added flags')
    added.add_argument('--device', help='cpu, cuda or cuda:N (overrides --gpu)')
    added.add_argument('--output', default='output', help='results root (default output); overlays go to overlay/ beside it')
    added.add_argument('--sequences', help='comma-separated subset of the videos to run')
    added.add_argument('--overwrite', action='store_true', help='redo videos whose outputs are all written (default: skip them)')
    added.add_argument('--workers', type=int, default=2, help='frame-decoding worker processes per video (default 2)')
    added.add_argument('--score', action='store_true', help='score the results against the annotations (DAVIS protocol)')
    added.add_argument('--score-only', action='store_true', help='only score an existing --results folder against --dataset')
    added.add_argument('--results', help='with --score-only: folder with <video>/<frame>.png results')
    added.add_argument('--video', help='a video file (MP4/AVI/MOV) or a folder of frames to segment')
    added.add_argument('--mask', help="with --video: the first frame's label mask (palette or grey-level PNG)")
    args = parser.parse_args(argv)
    if args.video is None and args.level is None:
        parser.error('one of --level or --video is required')
    if args.video is not None and not args.mask:
        parser.error('--video needs --mask, the first frame\'s label mask')
    if args.video is None and not args.dataset:
        parser.error('--dataset is required with --level')
    if not args.score_only and not args.resume:
        parser.error('--resume is required (a checkpoint path, URL, or pretrain / davis17 / youtube18)')
    if args.score_only and not args.results:
        parser.error('--score-only needs --results, the folder to score')
    return args


def model_name(args):
    name = VIDEO_MODEL_NAME if args.video else LEVELS[args.level][0]
    return f'{name}_{args.prefix}' if args.prefix else name


def output_folders(args, sequence_name):
    results = os.path.join(args.output, model_name(args))
    overlays = None
    if args.viz:
        overlay_root = os.path.join(os.path.dirname(os.path.abspath(args.output)), 'overlay', model_name(args))
        overlays = path_inside(overlay_root, sequence_name)
    return OutputFolders(path_inside(results, sequence_name), overlays)


def select_sequences(args):
    sequences = LEVELS[args.level][1](args.dataset)
    if args.sequences:
        wanted = [name for name in args.sequences.split(',') if name]
        known = {s.name for s in sequences}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise UserError(f'--sequences: {", ".join(unknown)} not in {args.dataset} '
                            f'(it has {", ".join(sorted(known)[:10])}{", ..." if len(known) > 10 else ""})')
        sequences = [s for s in sequences if s.name in wanted]
    return sequences


def score(args, sequences, results_dir, process):
    """Score this process's share; rank 0 merges every share and prints and writes the tables."""
    protocol = LEVELS[args.level][2]
    if protocol is None:
        if process.is_main:
            print('YouTube-VOS 2018 valid has no public annotations: submit the results folder '
                  f'{results_dir} (zipped) to the challenge server to score it')
        return
    by_name = {s.name: s for s in sequences}
    mine = [s.name for s in sequences[process.rank::process.world_size]]
    rows = {name: metrics.score_sequence(results_dir, lambda n: by_name[n].annotation_dir, name, protocol)
            for name in mine}
    gathered = gather_from_all(rows)
    if not process.is_main:
        return
    merged = {name: objects for part in gathered for name, objects in part.items()}
    objects = [o for s in sequences for o in merged[s.name]]
    summary = metrics.global_scores(objects)
    metrics.write_results_csv(results_dir, objects, summary)
    print(metrics.format_results_table(objects, summary))
    print(f'wrote {os.path.join(results_dir, "global_results-val.csv")} and per-sequence_results-val.csv')


def run_dataset(args, model, process):
    sequences = select_sequences(args)
    options = BankOptions(args.budget, args.update_rate, args.merge_thres)
    frames = seconds = 0
    for sequence in sequences[process.rank::process.world_size]:
        folders = output_folders(args, sequence.name)
        if not args.overwrite and is_done(sequence, folders):
            print(f'{sequence.name}: outputs already written, skipped (--overwrite redoes it)')
            continue
        report = segment_sequence(model, sequence, folders, options, workers=args.workers)
        print(report.summary())
        frames, seconds = frames + report.frames, seconds + report.seconds
    if frames:
        print(f'total: {frames} frames in {seconds:.1f} s, {frames / seconds:.2f} fps')
    if args.score:
        score(args, sequences, os.path.join(args.output, model_name(args)), process)


def run_video(args, model):
    """One video file or frame folder, with the long-video semantics."""
    name = os.path.splitext(os.path.basename(os.path.normpath(args.video)))[0]
    folders = output_folders(args, name)
    if os.path.isdir(args.video):
        sequence = eval_sets.frame_folder_sequence(args.video, args.mask, name=name)
        report = segment_sequence(model, sequence, folders, BankOptions(args.budget, args.update_rate, args.merge_thres),
                                  workers=args.workers)
    else:
        items = stream_video_file(args.video, args.mask)
        labels = object_labels_of(read_label_mask(args.mask), source=args.mask)
        report = segment_frames(model, items, labels, folders, BankOptions(args.budget, args.update_rate, args.merge_thres),
                                fps=video_fps(args.video), total=video_frame_count(args.video) or None, name=name)
    print(report.summary())
    print(f'masks in {folders.masks}' + (f', overlay video {folders.overlay_video}' if folders.overlays else ''))


def main(argv=None):
    args = parse_args(argv)
    try:
        with process_group() as process:
            if args.score_only:
                sequences = select_sequences(args)
                score(args, sequences, args.results, process)
                return 0
            device = device_name(args.device, args.gpu)
            if process.distributed and device.startswith('cuda') and ':' not in device:
                device = f'cuda:{process.local_rank}'
            model = load_model(resolve_checkpoint(args.resume), select_device(device, '--device' if args.device else '--gpu'))
            start = time.perf_counter()
            if args.video:
                run_video(args, model)
            else:
                run_dataset(args, model, process)
            if process.is_main:
                print(f'done in {time.perf_counter() - start:.1f} s')
    except UserError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('interrupted: finished videos are kept; rerun the same command to continue', file=sys.stderr)
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
