"""The experiment of a detk8s run, for YOLOX and miemiedetection: the `-f` file of their
tools/train.py and tools/eval.py. The yolox adapter puts this file in the run's ConfigMap beside
yolox.json, which names the base experiment and the run's values (dataset, epochs, lr, output
dir). It runs inside the trainer, so it uses the standard library and the trainer only.

Both trainers load `-f FILE` by importing it and calling its `Exp()`; `exp.merge(opts)` follows,
so the run's free-form opts still win over what is set here.
"""

import importlib
import json
import os

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "yolox.json")


def Exp():  # the name the trainers call
    with open(CONFIG, encoding="utf-8") as f:
        config = json.load(f)
    get_exp = importlib.import_module(config["package"] + ".exp").get_exp
    exp = get_exp(config["exp_file"], config["exp_name"])
    for key, value in config["attributes"].items():
        if hasattr(exp, key):  # as exp.merge does: only what the experiment knows
            setattr(exp, key, value)
    # Some experiments copy num_classes into their model settings when they are built
    # (miemiedetection's head and assigner dicts): those copies follow the dataset too.
    for value in vars(exp).values():
        if isinstance(value, dict) and "num_classes" in value:
            value["num_classes"] = exp.num_classes
    return exp
