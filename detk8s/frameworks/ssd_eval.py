"""eval_ssd.py of the jetson-inference SSD trainer, at the resolution the model was trained at.

    python ssd_eval.py CODE_DIR RESOLUTION [eval_ssd.py arguments...]

train_ssd.py sizes mb1-ssd's priors with `config.set_image_size(--resolution)`; eval_ssd.py has
no such option and always evaluates at 300, which scores a model trained at another size wrongly.
This makes the same call first, then runs eval_ssd.py unchanged. Runs in the trainer's Python,
without detk8s importable: standard library and the trainer's code only.
"""

import logging
import os
import runpy
import sys


def main() -> None:
    code_dir, resolution, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    sys.path.insert(0, code_dir)
    if args[args.index("--net") + 1] == "mb1-ssd":  # the only net train_ssd.py resizes
        from vision.ssd.config import mobilenetv1_ssd_config

        mobilenetv1_ssd_config.set_image_size(resolution)
        # That logged before eval_ssd.py's logging.basicConfig, which would now do nothing.
        for handler in logging.root.handlers[:]:
            logging.root.removeHandler(handler)
    script = os.path.join(code_dir, "eval_ssd.py")
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
