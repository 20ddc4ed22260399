"""``scvae``: the one command line. Each verb is a thin shell over a scvae_core function.

The one module at the top of the package that imports the book, the runner and the bench:
it dispatches to all of them (tests/test_structure.py exempts it from the core's rule)."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from . import data
from .lock import LockError
from .presets import DATASETS, DEFAULT_DATASET, PRESETS
from .results import DEFAULT_RESULTS_DIR, MAX_SEED, ResultError, check_seed
from .runner.executor import RunsFailed
from .zoo import UnknownName


def seed_arg(text: str) -> int:
    """argparse type of --seed/--seeds: argparse prefixes the message with the option's name."""
    try:
        return check_seed(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer in 0..{MAX_SEED}, got {text!r}") from None


def _results_dir_arg(p: argparse.ArgumentParser) -> None:
    # The second name is the old one, kept so that scripts written against it still run.
    p.add_argument("--results-dir", "--out", default=str(DEFAULT_RESULTS_DIR), help="results root (default: results/)")


def _dataset_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default=DEFAULT_DATASET, choices=list(DATASETS), metavar="DATASET",
                   help="data set: " + "; ".join(f"{name}: {text}" for name, text in DATASETS.items())
                   + f" (default: {DEFAULT_DATASET}). Results of a data set other than {DEFAULT_DATASET} lie under "
                   "RESULTS_DIR/<dataset>/<preset>/")


def _model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a name from `scvae models`")


def _seed_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=seed_arg, default=0, help="random seed (default: 0)")


def _preset_option(p: argparse.ArgumentParser, default: str | None = "smoke") -> None:
    """--preset; ``default`` None: required."""
    p.add_argument("--preset", default=default, required=default is None,
                   help=f"budget: {' | '.join(PRESETS)}" + (f" (default: {default})" if default else ""))


def _seeds_option(p: argparse.ArgumentParser, default: list[int] | None = None) -> None:
    p.add_argument("--seeds", type=seed_arg, nargs="+", default=default,
                   help="seeds (default: " + (" ".join(map(str, default)) if default else
                                              "the preset's seeds for each stage") + ")")


def _device_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")


def _data_dir_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, help="data folder (default: $SCVAE_DATA, else data/)")


def _no_progress_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")


def _run_args(p: argparse.ArgumentParser, stage: bool = False) -> None:
    _preset_option(p)
    _dataset_arg(p)
    _device_option(p)
    _results_dir_arg(p)
    _data_dir_option(p)
    _no_progress_option(p)
    if stage:
        _seeds_option(p)
    else:
        _seed_option(p)


def _executor_args(p: argparse.ArgumentParser) -> None:
    from .runner.executor import DEFAULT_JOBS, DEFAULT_THREADS, INLINE

    p.add_argument("--jobs", type=int, default=None,
                   help=f"local worker processes, one run each at a time (default: {DEFAULT_JOBS}, measured fastest "
                   "on a 2-core CPU; with --device cuda: --runs-per-gpu)")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                   help=f"torch threads per run (default: {DEFAULT_THREADS})")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="a running Dask scheduler whose workers run the tasks (default: a local cluster of --jobs "
                   f"workers); {INLINE!r}: one run after another in this process, without Dask")
    p.add_argument("--runs-per-gpu", type=int, default=1, metavar="K",
                   help="with --device cuda, each run asks the scheduler for 1/K of a GPU, so K runs share one "
                   "(default: 1)")


STAGES_TEXT = "; ".join(f"{name}: {', '.join(p.stages)}" for name, p in PRESETS.items())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scvae",
        description="Reproduce 'Degeneration in VAE: in the Light of Fisher Information Loss'. "
        "Runs write results/<preset>/<model>/seed<k>/ (JSON + npz with provenance); the book reads them.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list the named models with their architecture",
                       description="List every named model: depths, skips, prior, decoder, parameters.")
    p.add_argument("--write", action="store_true",
                   help="also write them to RESULTS_DIR/models/models.json, which the book reads")
    _results_dir_arg(p)
    p.set_defaults(func=_models)

    p = sub.add_parser("train", help="train one model (resumes from its checkpoint)",
                       description="Train MODEL under a preset; killed and re-run, it resumes where it stopped.")
    _model_arg(p)
    _run_args(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="evaluate a trained model into eval.json / figures.npz",
                       description="NLL, ELBO terms, active units, SVM accuracy, layer-wise Fisher, "
                       "t-SNE embeddings and image grids of a trained MODEL.")
    _model_arg(p)
    _run_args(p)
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("compare", help="compare a run with a second training of it: bit for bit?",
                       description="Compare the run MODEL/--preset/--seed in --results-dir with the same run trained "
                       "again into --rerun-dir (`scvae train MODEL ... --results-dir DIR`, then `scvae evaluate`): the "
                       "history epoch by epoch, and every evaluation both have, metric by metric.")
    _model_arg(p)
    _preset_option(p, None)
    _seed_option(p)
    _dataset_arg(p)
    _results_dir_arg(p)
    p.add_argument("--rerun-dir", required=True, help="the results root the second training wrote")
    p.add_argument("--record", action="store_true",
                   help="keep the comparison in RESULTS_DIR/reruns/reruns.json, which the book shows")
    p.add_argument("--adopt", action="store_true",
                   help="record it, then put the re-run's result files in place of the run's (checkpoints stay)")
    p.set_defaults(func=_compare)

    p = sub.add_parser("reproduce", help="train and evaluate every model of one or more stages",
                       description="Run a preset's stages end to end; an interrupted stage continues where it "
                       f"stopped. Stages per preset: {STAGES_TEXT}.")
    p.add_argument("stages", nargs="+", help="stage names of the preset, or all")
    _run_args(p, stage=True)
    _executor_args(p)
    p.set_defaults(func=_reproduce)

    p = sub.add_parser("sprint", help="a GPU loan in one command: Table 1 x seeds 0-2 at once, budgeted, packed",
                       description="Train and evaluate the preset's Table 1 models for the seeds all at once, each "
                       "run's training cut at a wall-clock budget so that everything ends within --minutes (train.json "
                       "says the epochs reached and why training stopped), then pack RESULTS_DIR/<preset>/ without "
                       "checkpoints into at most 8 files of at most 16 MiB in --pack-dir. Runs without Dask or "
                       "openTSNE (t-SNE is then skipped and eval.json says so). --unpack DIR puts a pack back "
                       "under --results-dir.")
    p.add_argument("--pack-dir", default=None, help="empty folder for the packed results (required unless --unpack)")
    p.add_argument("--unpack", default=None, metavar="DIR",
                   help="only unpack DIR (from an earlier sprint) into --results-dir")
    _preset_option(p, "paper")
    _dataset_arg(p)
    _seeds_option(p, [0, 1, 2])
    _device_option(p)
    _results_dir_arg(p)
    _data_dir_option(p)
    p.add_argument("--minutes", type=float, default=9.0, help="everything ends within this (default: 9)")
    p.add_argument("--eval-minutes", type=float, default=3.0,
                   help="of which kept for evaluation after the training budgets (default: 3)")
    p.add_argument("--jobs", type=int, default=None, help="runs at once (default: all of them)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per run (default: 1)")
    p.add_argument("--revision", default=None,
                   help="the checkout's git revision, recorded in sprint.json (for a copy without .git)")
    _no_progress_option(p)
    p.set_defaults(func=_sprint)

    p = sub.add_parser("status", help="show which runs of one or more stages are done, invalid, partial or to do",
                       description="List every model and seed of the stages with its state on disk: "
                       "done (evaluated), invalid (a result file the book refuses: corrupt, truncated, of another "
                       "run or settings; `scvae evaluate` says why and recomputes it), partial (started: the epoch of "
                       "its checkpoint, its evaluations, and the process working on it now, if any) or todo; then "
                       "each stage's finished runs and their run time. Runs nothing; with --write-summaries it "
                       "also rewrites the stage summaries (RESULTS_DIR/<preset>/stage-<stage>.json) that the runs "
                       "on disk no longer bear out, e.g. after runs were copied or merged in.")
    p.add_argument("stages", nargs="+", help="stage names of the preset, or all")
    _preset_option(p)
    _dataset_arg(p)
    _results_dir_arg(p)
    _seeds_option(p)
    p.add_argument("--write-summaries", action="store_true",
                   help="rewrite the stages' summaries on disk where they no longer match the runs")
    p.set_defaults(func=_status)

    p = sub.add_parser("bench", help="measure this machine: ceilings, memory bandwidth, training, NLL and Fisher",
                       description="Time the models' float32 matrix multiplies and convolutions alone (the ceiling) "
                       "and the memory bandwidth (a roofline), then training (vae-1l, scvae, vae-1l+vamp, pixelvae), "
                       "importance-sampled NLL and per-example Fisher against them; print a table and "
                       "write RESULTS_DIR/bench/<machine>.json for the book's performance appendix. About 5 minutes "
                       "on a 2-core CPU; needs no data.")
    _device_option(p)
    p.add_argument("--quick", action="store_true", help="tiny sizes, for tests: the numbers mean nothing")
    _results_dir_arg(p)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--cpu-clock", action="store_true",
                   help="time by the thread's CPU time (needs --threads 1): per-core figures on a shared machine")
    p.add_argument("--make-book", action="store_true", help="first run and time `make book` (recorded for the table)")
    _no_progress_option(p)
    p.set_defaults(func=_bench)

    p = sub.add_parser("baselines", help="the SVM protocol on raw pixels and on their PCA: context for svm_acc",
                       description="The paper's SVM protocol (standardised RBF SVC, stratified folds, the same test "
                       "images as every evaluation) on the 784 raw binary pixels and on their first principal "
                       "components (fitted on the training images), and logistic regression on the pixels; writes "
                       "RESULTS_DIR/baselines/baselines.json. All 10,000 test images take minutes on one core.")
    p.add_argument("--size", type=int, default=None, help="the first N test images of the fixed permutation "
                   "(default: all 10,000)")
    p.add_argument("--folds", type=int, default=5,
                   help="cross-validation folds (default: 5, as every preset but smoke)")
    _results_dir_arg(p)
    _data_dir_option(p)
    p.set_defaults(func=_baselines)

    data.add_data_commands(sub)
    return parser


def _models(args) -> None:
    from .results import write_models
    from .zoo import MODELS, describe

    for name in MODELS:
        print(describe(name))
    if args.write:
        print(f"wrote {write_models(args.results_dir)}")


def _train(args) -> None:
    from .runner.reproduce import refresh_stage_summaries
    from .train import train_run

    train_run(args.model, args.preset, args.seed, device=args.device, results_dir=args.results_dir,
              data_dir=args.data_dir, progress=not args.no_progress, dataset=args.dataset)
    # the run changed under them
    refresh_stage_summaries(args.results_dir, args.preset, model=args.model, dataset=args.dataset)


def _evaluate(args) -> None:
    from .evaluate import evaluate_run
    from .runner.reproduce import refresh_stage_summaries

    evaluate_run(args.model, args.preset, args.seed, device=args.device, results_dir=args.results_dir,
                 data_dir=args.data_dir, progress=not args.no_progress, dataset=args.dataset)
    refresh_stage_summaries(args.results_dir, args.preset, model=args.model, dataset=args.dataset)


def _compare(args) -> None:
    from . import rerun
    from .runner.reproduce import refresh_stage_summaries

    first, again = (rerun.run_paths(d, args.preset, args.model, args.seed, args.dataset)
                    for d in (args.results_dir, args.rerun_dir))
    entry = rerun.compare_runs(first, again)
    print(rerun.describe(entry))
    if args.record or args.adopt:
        rerun.check_complete(first, again)
        print(f"recorded in {rerun.record(args.results_dir, entry)}")
    if args.adopt:
        print(f"adopted {len(rerun.adopt(first, again))} files of {again.dir} into {first.dir}")
        for path in refresh_stage_summaries(args.results_dir, args.preset, model=args.model, dataset=args.dataset):
            print(f"rewrote {path}")


def _reproduce(args) -> None:
    from .runner.reproduce import reproduce

    reproduce(args.stages, args.preset, seeds=args.seeds, device=args.device, results_dir=args.results_dir,
              data_dir=args.data_dir, progress=not args.no_progress, jobs=args.jobs, threads=args.threads,
              scheduler=args.scheduler, runs_per_gpu=args.runs_per_gpu, dataset=args.dataset)


def _sprint(args) -> None:
    from .runner import sprint

    if args.unpack:
        files = sprint.unpack(args.unpack, args.results_dir)
        print(f"unpacked {len(files)} files from {args.unpack} into {args.results_dir}")
        return
    if not args.pack_dir:
        raise ValueError("scvae sprint needs --pack-dir DIR (an empty folder for the packed results), or --unpack DIR")
    sprint.sprint(args.pack_dir, args.preset, args.seeds, args.device, args.results_dir, args.data_dir, args.minutes,
                  args.eval_minutes, args.jobs, args.threads, progress=not args.no_progress, revision=args.revision,
                  dataset=args.dataset)


def _status(args) -> None:
    from .runner.reproduce import format_plan, plan, refresh_stage_summaries, stage_times

    print(format_plan(plan(args.stages, args.preset, seeds=args.seeds, results_dir=args.results_dir,
                           dataset=args.dataset)))
    if args.write_summaries:
        for path in refresh_stage_summaries(args.results_dir, args.preset, args.stages, dataset=args.dataset):
            print(f"rewrote {path}")
    print(f"\nfinished runs per stage on {args.dataset}, from their files (wall time = the runs' own train + "
          "evaluate times):")
    print(stage_times(args.results_dir, args.dataset))


def _baselines(args) -> None:
    from .probes import write_baselines

    path = write_baselines(args.results_dir, args.size, args.folds, data_dir=args.data_dir)
    print(f"wrote {path}")


def _bench(args) -> int:
    import subprocess

    from .bench import bench
    from .bench.bench_tables import format_table

    if args.make_book:
        try:
            bench.time_make_book()
        except subprocess.CalledProcessError as e:
            print(f"scvae: error: `make book` failed (exit {e.returncode}); its output is above", file=sys.stderr)
            return 1
    path, doc = bench.run_bench(args.device, args.quick, args.results_dir, args.threads, args.cpu_clock,
                                progress=not args.no_progress)
    print(format_table(doc))
    print(f"wrote {path}")
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a batch system's time limit), stopping the command as Ctrl-C does: the
    runs' locks released, the stage files written, and the hint to resume."""


def _terminate(signum, frame):
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Only where nobody chose another handler (an embedding program, a test runner).
    term = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    if term:
        signal.signal(signal.SIGTERM, _terminate)
    try:
        result = args.func(args)
        sys.stdout.flush()  # here, so that a closed pipe is seen below, not at exit
    except (UnknownName, ResultError, data.DataError, ValueError, LockError, RunsFailed) as e:
        print(f"scvae: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        how = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        print(f"scvae: {how}; run the same command again to resume.", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except BrokenPipeError:  # `scvae models | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    finally:
        if term:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
