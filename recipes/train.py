"""Launchable classification recipe (the same code as ``hf-transfer train``).

    python recipes/train.py recipes/configs/text_full.yaml --max_steps 20
    accelerate launch --num_processes 2 recipes/train.py recipes/configs/text_lora.yaml
    accelerate launch --config_file recipes/accelerate/cpu_2proc.yaml recipes/train.py recipes/configs/text_full.yaml
"""

import sys

from hf_transfer.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
