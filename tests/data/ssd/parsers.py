# The command-line parsers of the jetson-inference SSD trainer, verbatim: dusty-nv/pytorch-ssd
# at 6accaa88845ec135a7d6fe25e9a26afd4698639d (the commit the image checks out), train_ssd.py
# lines 36-111 (as seed 002 shows it) and eval_ssd.py lines 191-204, with misc.str2bool. The
# code is not on PyPI, so the tests parse the adapter's argv with these copies.
#
# MIT License, Copyright (c) 2019 Hao Gao (pytorch-ssd's LICENSE).
import argparse


def str2bool(s):
    return s.lower() in ('true', '1')


def train_parser():
    DEFAULT_PRETRAINED_MODEL='models/mobilenet-v1-ssd-mp-0_675.pth'


    parser = argparse.ArgumentParser(
        description='Single Shot MultiBox Detector Training With PyTorch')

    # Params for datasets
    parser.add_argument("--dataset-type", default="open_images", type=str,
                        help='Specify dataset type. Currently supports voc and open_images.')
    parser.add_argument('--datasets', '--data', nargs='+', default=["data"], help='Dataset directory path')
    parser.add_argument('--balance-data', action='store_true',
                        help="Balance training data by down-sampling more frequent labels.")

    # Params for network
    parser.add_argument('--net', default="mb1-ssd",
                        help="The network architecture, it can be mb1-ssd, mb1-ssd-lite, mb2-ssd-lite or vgg16-ssd.")
    parser.add_argument('--resolution', type=int, default=300,
                        help="the NxN pixel resolution of the model (can be changed for mb1-ssd only)")
    parser.add_argument('--freeze-base-net', action='store_true',
                        help="Freeze base net layers.")
    parser.add_argument('--freeze-net', action='store_true',
                        help="Freeze all the layers except the prediction head.")
    parser.add_argument('--mb2-width-mult', default=1.0, type=float,
                        help='Width Multiplifier for MobilenetV2')

    # Params for loading pretrained basenet or checkpoints.
    parser.add_argument('--base-net', help='Pretrained base model')
    parser.add_argument('--pretrained-ssd', default=DEFAULT_PRETRAINED_MODEL, type=str, help='Pre-trained base model')
    parser.add_argument('--resume', default=None, type=str, help='Checkpoint state_dict file to resume training from')

    # Params for SGD
    parser.add_argument('--lr', '--learning-rate', default=0.01, type=float,
                        help='initial learning rate')
    parser.add_argument('--momentum', default=0.9, type=float,
                        help='Momentum value for optim')
    parser.add_argument('--weight-decay', default=5e-4, type=float,
                        help='Weight decay for SGD')
    parser.add_argument('--gamma', default=0.1, type=float,
                        help='Gamma update for SGD')
    parser.add_argument('--base-net-lr', default=0.001, type=float,
                        help='initial learning rate for base net, or None to use --lr')
    parser.add_argument('--extra-layers-lr', default=None, type=float,
                        help='initial learning rate for the layers not in base net and prediction heads.')

    # Scheduler
    parser.add_argument('--scheduler', default="cosine", type=str,
                        help="Scheduler for SGD. It can one of multi-step and cosine")

    # Params for Multi-step Scheduler
    parser.add_argument('--milestones', default="80,100", type=str,
                        help="milestones for MultiStepLR")

    # Params for Cosine Annealing
    parser.add_argument('--t-max', default=100, type=float,
                        help='T_max value for Cosine Annealing Scheduler.')

    # Train params
    parser.add_argument('--batch-size', default=4, type=int,
                        help='Batch size for training')
    parser.add_argument('--num-epochs', '--epochs', default=30, type=int,
                        help='the number epochs')
    parser.add_argument('--num-workers', '--workers', default=2, type=int,
                        help='Number of workers used in dataloading')
    parser.add_argument('--validation-epochs', default=1, type=int,
                        help='the number epochs between running validation')
    parser.add_argument('--validation-mean-ap', action='store_true',
                        help='Perform computation of Mean Average Precision (mAP) during validation')
    parser.add_argument('--debug-steps', default=10, type=int,
                        help='Set the debug log output frequency.')
    parser.add_argument('--use-cuda', default=True, action='store_true',
                        help='Use CUDA to train model')
    parser.add_argument('--checkpoint-folder', '--model-dir', default='models/',
                        help='Directory for saving checkpoint models')
    parser.add_argument('--log-level', default='info', type=str,
                        help='Logging level, one of:  debug, info, warning, error, critical (default: info)')

    return parser


def eval_parser():
    parser = argparse.ArgumentParser(description="SSD Evaluation on VOC Dataset.")

    parser.add_argument('--net', default="vgg16-ssd", help="The network architecture, it should be of mb1-ssd, mb1-ssd-lite, mb2-ssd-lite or vgg16-ssd.")
    parser.add_argument("--model", type=str, help="Path to the trained PyTorch checkpoint")
    parser.add_argument("--dataset_type", default="voc", type=str, help="Specify dataset type. Currently support voc and open_images.")
    parser.add_argument("--dataset", type=str, help="The root directory of the VOC dataset or Open Images dataset.")
    parser.add_argument("--label_file", type=str, help="The label file path.")
    parser.add_argument("--use_cuda", type=str2bool, default=True)
    parser.add_argument("--use_2007_metric", type=str2bool, default=True)
    parser.add_argument("--nms_method", type=str, default="hard")
    parser.add_argument("--iou_threshold", type=float, default=0.5, help="The threshold of Intersection over Union.")
    parser.add_argument("--eval_dir", default="models/eval_results", type=str, help="The directory to store evaluation results.")
    parser.add_argument('--mb2_width_mult', default=1.0, type=float,
                        help='Width Multiplifier for MobilenetV2')
    return parser
