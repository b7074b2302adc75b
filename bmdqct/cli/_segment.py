"""``bmdqct segment`` and ``bmdqct train`` (see :mod:`bmdqct.cli`)."""

from __future__ import annotations

import json
from pathlib import Path


def register(commands, common) -> None:
    """Add ``segment`` and ``train`` to `commands` (an argparse subparsers action)."""
    seg = commands.add_parser("segment", parents=[common],
                              help="segment vertebral bodies (T1-T6, T7-T12, L1-L2) in a CT")
    seg.add_argument("input", help="DICOM folder or file, NIfTI, MHA/MHD or NRRD")
    seg.add_argument("-o", "--output", required=True, help="output folder")
    seg.add_argument("--model", help="model .keras file (default: the shipped weights)")
    seg.add_argument("--no-order", action="store_true",
                     help="keep the network's per-voxel classes (skip the decoder that makes "
                          "T1-T6, T7-T12, L1-L2 follow each other down the spine)")
    seg.set_defaults(func=_run_segment)

    train = commands.add_parser(
        "train", parents=[common], help="train the segmentation model (resumable)",
        description="Train the dense 3-D U-Net on synthetic scans and/or annotated folders. "
                    "Re-running the same command resumes from the checkpoint folder.")
    train.add_argument("-o", "--output", required=True, help="model file to write (.keras)")
    train.add_argument("--checkpoint-dir", required=True,
                       help="folder for the resumable checkpoint and the prepared-data cache")
    train.add_argument("--preset", default="cpu-fast", choices=["cpu-fast", "pan2020"])
    train.add_argument("--synthetic", type=int, default=200, metavar="N",
                       help="number of synthetic training scans (default 200)")
    train.add_argument("--synthetic-seed-start", type=int, default=10000)
    train.add_argument("--validation", type=int, default=6, metavar="N",
                       help="synthetic validation scans (seeds from --validation-seed-start)")
    train.add_argument("--validation-seed-start", type=int, default=900)
    train.add_argument("--data", action="append", default=[], metavar="DIR",
                       help="folder of annotated scans DIR/<case>/{ct*, *seg*}; repeatable")
    train.add_argument("--label-scheme", default="verse", choices=["verse", "totalsegmentator"])
    train.add_argument("--epochs", type=int, default=30)
    train.add_argument("--steps-per-epoch", type=int, default=100)
    train.add_argument("--batch-size", type=int, default=2)
    train.add_argument("--learning-rate", type=float, default=1e-4)
    train.add_argument("--lr-patience", type=int, default=3, metavar="N",
                       help="halve the learning rate after N epochs without a better validation "
                            "Dice (default 3)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--init", default=None, metavar="MODEL",
                       help="start from this model's weights (fine-tuning; same preset)")
    train.add_argument("--no-resume", action="store_true", help="start afresh")
    train.add_argument("--generator", default="training", choices=["training", "transfer"],
                       help="synthetic options: random_training_options or random_transfer_options")
    train.add_argument("--data-fraction", type=float, default=0.0, metavar="F",
                       help="share of training draws taken from the --data scans (default 0: uniform over all scans)")
    train.add_argument("--transfer-augment", action="store_true",
                       help="add contrast vessels, tissue-level remaps, bias, streaks, FOV cuts")
    train.add_argument("--cache-dir", default=None,
                       help="prepared crops (default CHECKPOINT_DIR/cache; keep real-scan crops "
                            "outside the repository)")
    train.add_argument("--snapshot-dir", default=None,
                       help="also write every epoch's model there (epoch-NNN.keras), to judge "
                            "epochs on real scans afterwards")
    train.set_defaults(func=_run_train)


def _run_segment(args) -> int:
    from ..io import load_ct, write_nifti
    from ..segment import segment_spine
    from ..volume import CTVolume

    volume = load_ct(args.input)
    from ..spine import find_spinal_canal

    seg = segment_spine(volume, args.model, anatomical_order=not args.no_order, progress=True,
                        canal=find_spinal_canal(volume))        # the crop measure uses
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    write_nifti(seg.classes, out / "classes.nii.gz", like=volume)
    write_nifti(CTVolume(seg.confidence, volume.affine, volume.metadata), out / "confidence.nii.gz")
    counts = {name: int((seg.classes.labels == cid).sum()) for name, cid in seg.classes.names.items()}
    print(json.dumps({"model_id": seg.model_id, "voxels_per_class": counts}, indent=2))
    return 0


def _run_train(args) -> int:
    from ..segment.train import TrainingConfig, train

    config = TrainingConfig(
        preset=args.preset, n_synthetic=args.synthetic,
        synthetic_seed_start=args.synthetic_seed_start, n_validation=args.validation,
        validation_seed_start=args.validation_seed_start, data_dirs=tuple(args.data),
        label_scheme=args.label_scheme, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size, learning_rate=args.learning_rate,
        lr_patience=args.lr_patience, seed=args.seed,
        init_model=args.init, generator=args.generator, data_fraction=args.data_fraction,
        transfer_augment=args.transfer_augment)
    model = train(config, args.output, checkpoint_dir=args.checkpoint_dir, cache_dir=args.cache_dir,
                  resume=not args.no_resume, progress=True, snapshot_dir=args.snapshot_dir)
    print(json.dumps({"model": str(args.output), "model_id": model.model_id,
                      "validation_dice": model.info.get("validation_dice")}, indent=2))
    return 0
