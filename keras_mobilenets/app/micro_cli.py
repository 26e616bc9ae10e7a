"""`keras-mobilenets micro`: which MobileNet fits a microcontroller, and one configuration measured.

With --arena / --flash it lists the measured table shipped with the package (deploy.micro_table, written
by benchmarks/bench_micro.py); with --arch it builds, splits, converts and runs one configuration on
TFLite Micro and ends with `arena_bytes=N predicted_peak_bytes=M file_bytes=F`.
"""

from keras_mobilenets.nets.models import ARCH_NAMES


def add_micro_command(command):
    micro = command("micro", help="which MobileNet fits a microcontroller (TFLite Micro arena and flash)",
                    description=__doc__)
    micro.add_argument("--arena", help="SRAM budget for the tensor arena, e.g. 256KB (KB = 1024 bytes)")
    micro.add_argument("--flash", help="flash budget for the int8 file, e.g. 1MB")
    micro.add_argument("--arch", choices=ARCH_NAMES, help="measure this architecture now instead of listing")
    micro.add_argument("--alpha", type=float, default=0.35, help="width multiplier (with --arch)")
    micro.add_argument("--resolution", type=int, default=96, help="input size in pixels (with --arch)")
    micro.add_argument("--channels", type=int, default=3, choices=(1, 3), help="1: grayscale input")
    micro.add_argument("--minimalistic", action="store_true", help="MobileNetV3 minimalistic")
    micro.add_argument("--split", type=int, default=1,
                       help="t of the V2 paper's t-way split of every inverted residual block")
    micro.add_argument("--classes", type=int, default=1000, help="classifier width (with --arch)")
    micro.add_argument("--no-in-place", action="store_true",
                       help="keep TFLite Micro's own memory plan (no offline plan with in-place ADDs)")
    micro.add_argument("--out", help="also write the int8 .tflite file here (with --arch)")
    micro.set_defaults(run=run_micro_command)
    return micro


def _fits(rows, arena, flash):
    return sorted((row for row in rows if (arena is None or row.arena_bytes <= arena)
                   and (flash is None or row.file_bytes <= flash)), key=lambda row: -row.macs)


def run_micro_command(args):
    from keras_mobilenets.deploy import micro

    arena = None if args.arena is None else micro.parse_size("--arena", args.arena)
    flash = None if args.flash is None else micro.parse_size("--flash", args.flash)
    if args.arch is None:
        from keras_mobilenets.deploy.micro_table import MEASURED, SETTINGS

        rows = _fits(MEASURED, arena, flash)
        print(f"measured on TFLite Micro ({SETTINGS}); sorted by MACs, most first")
        print(f"{'arch':<18}{'alpha':>6}{'res':>5}{'ch':>4}{'t':>4}{'MACs':>12}{'arena':>11}{'file':>11}")
        for row in rows:
            print(f"{row.label:<18}{row.alpha:>6g}{row.resolution:>5}{row.channels:>4}{row.t:>4}"
                  f"{row.macs:>12,}{row.arena_bytes:>11,}{row.file_bytes:>11,}")
        if not rows:
            print("nothing measured fits; measure another configuration with --arch ... --split T")
        return 0 if rows else 1
    report, content = micro.measure_configuration(args.arch, args.alpha, args.resolution, args.channels,
                                                  args.minimalistic, args.split, args.classes,
                                                  in_place=not args.no_in_place)
    if args.out:
        from keras_mobilenets.fileio import write_atomic

        write_atomic(args.out, content)
    fits = ((arena is None or report.arena_bytes <= arena) and (flash is None or report.file_bytes <= flash))
    print(f"{args.arch} alpha={args.alpha:g} {args.resolution}x{args.resolution}x{args.channels} "
          f"t={args.split}: MACs {report.macs:,}; recording allocator total {report.recorded_bytes:,} B"
          + ("" if arena is None and flash is None else f"; fits the budget: {'yes' if fits else 'no'}"))
    print(report.line())
    return 0
