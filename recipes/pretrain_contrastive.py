"""Launchable contrastive pre-training recipe (the same code as ``hf-transfer pretrain``).

SimCLR/SimCSE (or SupCon) pre-training on a dataset's inputs, a linear probe before and after, and
the encoder saved as a Hugging Face checkpoint that ``hf-transfer train --model DIR`` fine-tunes.

    python recipes/pretrain_contrastive.py recipes/configs/pretrain_text_simclr.yaml
    python recipes/pretrain_contrastive.py recipes/configs/pretrain_image_simclr.yaml
    accelerate launch --cpu --num_processes 2 recipes/pretrain_contrastive.py recipes/configs/pretrain_text_simclr.yaml
"""

import sys

from hf_transfer.cli import main

if __name__ == "__main__":
    sys.exit(main(["pretrain", *sys.argv[1:]]))
