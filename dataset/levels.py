"""eval.py's levels: which videos each reads, its output folder, how it is scored, and the bank
settings that differ between levels in the paper's protocol."""
from dataclasses import dataclass
from typing import Callable

from dataset.eval_sets import davis_sequences, long_video_sequences, youtube_sequences
from model.inference.options import DEFAULT_BANK_OPTIONS


@dataclass(frozen=True)
class Level:
    model_name: str                    # output folder name (as released)
    read_sequences: Callable           # (dataset root, wanted names or None) -> [Sequence]
    protocol: str | None               # scoring protocol (dataset.scoring); None: no public annotations
    update_rate: float                 # the bank's update rate the paper's results used
    frames_not_memorized: int = 1      # the last frames that never enter the bank (2 in the released long-video loop)

    def update_before(self, sequence):
        """Propagation's bound: frames from this index on do not update the bank."""
        return len(sequence) - self.frames_not_memorized


LEVELS = {
    1: Level('AFB-URR_DAVIS_17val', davis_sequences, 'davis', update_rate=DEFAULT_BANK_OPTIONS.update_rate),
    2: Level('AFB-URR_YoutubeVOS', youtube_sequences, None, update_rate=0.05),
    3: Level('AFB-URR_LongVideo', long_video_sequences, 'long', update_rate=0.05, frames_not_memorized=2),
}
VIDEO_MODEL_NAME = 'AFB-URR_Video'
