"""A tiny randomly initialised SAM 2, saved as facebook/sam2.1-hiera-tiny lays out its transformers files.

That repository holds a video model (config.json of model_type 'sam2_video', its weights in model.safetensors),
the image processor's preprocessor_config.json and a processor_config.json; the click model loads the image
part of it with Sam2Model. Here every size is small (images of IMAGE_SIZE pixels, a few channels), so that
building, saving and running it takes a fraction of a second; nothing is downloaded.
"""
import json
import os

import torch

IMAGE_SIZE = 256  # the model's input side; SAM 2's own is 1024
PROCESSOR_CONFIG = {'point_pad_value': -10, 'processor_class': 'Sam2VideoProcessor', 'target_size': IMAGE_SIZE}


def tiny_sam2_config():
    from transformers import Sam2VideoConfig
    stride = IMAGE_SIZE // 4  # the patch embedding's output side; each of the next stages halves it
    backbone = dict(model_type='sam2_hiera_det_model', image_size=[IMAGE_SIZE, IMAGE_SIZE], hidden_size=8,
                    blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[8, 16, 32, 64],
                    num_attention_heads_per_stage=[1, 1, 1, 1], window_size_per_stage=[8, 4, 4, 4],
                    global_attention_blocks=[3],  # a global block must not start a stage
                    window_positional_embedding_background_size=[4, 4])
    vision = dict(model_type='sam2_vision_model', backbone_config=backbone, backbone_channel_list=[64, 32, 16, 8],
                  backbone_feature_sizes=[[stride, stride], [stride // 2, stride // 2], [stride // 4, stride // 4]],
                  fpn_hidden_size=32)
    return Sam2VideoConfig(
        vision_config=vision, image_size=IMAGE_SIZE,
        prompt_encoder_config=dict(hidden_size=32, image_size=IMAGE_SIZE),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
        memory_attention_hidden_size=32, memory_attention_num_layers=1, memory_attention_feed_forward_hidden_size=32,
        memory_encoder_hidden_size=32, memory_encoder_output_channels=16, mask_downsampler_embed_dim=32)


def write_tiny_sam2(folder, seed=0):
    """Save the tiny model's files in `folder` (created); returns {file name: bytes}, as a hub repository serves
    them."""
    from transformers import Sam2ImageProcessor, Sam2VideoModel
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(seed)
    Sam2VideoModel(tiny_sam2_config()).save_pretrained(folder)
    Sam2ImageProcessor(size={'height': IMAGE_SIZE, 'width': IMAGE_SIZE},
                       mask_size={'height': IMAGE_SIZE // 4, 'width': IMAGE_SIZE // 4}).save_pretrained(folder)
    with open(os.path.join(folder, 'processor_config.json'), 'w') as file:
        json.dump(PROCESSOR_CONFIG, file)
    files = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), 'rb') as file:
            files[name] = file.read()
    return files
