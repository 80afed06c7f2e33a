"""The ``flyte-state`` command: worker, publish, state, check, dashboard, demo and bench."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from pathlib import Path

from confluent_kafka import KafkaException

from processor.config import ConfigError, Settings

log = logging.getLogger("flyte_state")

REPO_ROOT = Path(__file__).resolve().parent.parent


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    if getattr(args, "bootstrap_servers", None):
        settings = settings.replace(bootstrap_servers=args.bootstrap_servers)
    return settings


def command_worker(args: argparse.Namespace) -> int:
    from processor.topics import admin_client, ensure_topics, state_topic_limits
    from topologies.execution_state import run_worker

    settings = _settings(args)
    if args.store:
        settings = settings.replace(store=args.store)
    admin = admin_client(settings)
    ensure_topics(settings, admin)
    limits = state_topic_limits(settings, admin)
    # The worker does not use this client, and librdkafka closes its
    # connections once it is freed.
    del admin
    return run_worker(settings, limits)


def command_publish(args: argparse.Namespace) -> int:
    from processor.progress import publish_progress
    from processor.publisher import EventPublisher
    from processor.topics import ensure_topics

    settings = _settings(args)
    for path in args.files:
        if path != "-" and not Path(path).is_file():
            print(f"stream file {path} not found or not a regular file; nothing was published", file=sys.stderr)
            return 2
    ensure_topics(settings)
    progress = publish_progress(args.files, args.progress)
    try:
        publisher = EventPublisher(settings, args.format)
        report = publisher.publish_files(args.files, on_line=progress.update if progress else None)
    finally:
        if progress is not None:
            progress.close()
    print(f"published {report.published} events to {settings.bootstrap_servers}", file=sys.stderr)
    if report.left_out:
        print(
            f"left out {report.left_out} events that FlyteAdmin does not publish: the first of each task attempt",
            file=sys.stderr,
        )
    if report.bad_lines:
        print(f"skipped {len(report.bad_lines)} bad lines:", file=sys.stderr)
        for line in report.bad_lines:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


def command_state(args: argparse.Namespace) -> int:
    from processor import render
    from processor.state_reader import StateReader, StateTopicsMissing

    settings = _settings(args)
    try:
        with StateReader(settings, metadata_timeout_seconds=args.timeout) as reader:
            records = reader.read_all(timeout_seconds=args.timeout)
            caught_up = reader.caught_up
    except StateTopicsMissing as error:
        # The broker responded, so the hint about reaching it would mislead.
        log.error("%s", error)
        return 1
    if not caught_up:
        log.warning(
            "stopped reading after --timeout %g s before the end of the state topics; the output may be incomplete",
            args.timeout,
        )

    if args.json:
        for line in render.json_lines(records):
            print(line)
        return 0
    if args.execution:
        text = render.render_execution(records, args.execution)
        if text.endswith("not found in the state topics"):
            print(text, file=sys.stderr)
            return 1
        print(text)
        return 0
    print(render.render_overview(records))
    return 0


def command_check(args: argparse.Namespace) -> int:
    from processor import expectations
    from processor.state_reader import StateReader, StateTopicsMissing

    paths = [expectations.expect_path_of(path) for path in args.files]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        print(f"facts file not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        expected = expectations.load_merged(paths)
    except expectations.InvalidFactsFile as error:
        print(error, file=sys.stderr)
        return 2
    fact_total = expectations.fact_count(expected)
    if fact_total == 0:
        print(f"no facts in {', '.join(map(str, paths))}: nothing to check", file=sys.stderr)
        return 2

    # Wait for the facts rather than read once, so that a check started
    # right after `publish` finds the worker's records as they arrive.
    settings = _settings(args)
    try:
        with StateReader(settings, metadata_timeout_seconds=args.timeout) as reader:
            reader.wait_until(lambda records: not expectations.check(expected, records), args.timeout)
            failures = expectations.check(expected, reader.records)
            caught_up = reader.caught_up
    except StateTopicsMissing as error:
        log.error("%s", error)
        return 1
    if failures and not caught_up:
        log.warning(
            "stopped reading after --timeout %g s before the end of the state topics; records may be missing",
            args.timeout,
        )

    if failures:
        print(f"{len(failures)} of {fact_total} expected facts do not hold after {args.timeout:g} s:")
        for failure in failures:
            print(f"  {failure}")
        return 1
    print(f"all {fact_total} expected facts hold")
    return 0


def command_dashboard(args: argparse.Namespace) -> int:
    from processor.dashboard.server import run_dashboard

    return run_dashboard(_settings(args), host=args.host, port=args.port)


def command_demo(args: argparse.Namespace) -> int:
    from processor.demo import run_demo

    return run_demo(_settings(args), streams_dir=args.streams, timeout_seconds=args.timeout)


def command_bench(args: argparse.Namespace) -> int:
    from processor.benchmark import main as run_benchmark

    options = list(args.options)
    if args.bootstrap_servers:
        options = ["--bootstrap-servers", args.bootstrap_servers, *options]
    return run_benchmark(options)


def positive_seconds(text: str) -> float:
    """Parse a number of seconds above 0 for argparse."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a finite number of seconds above 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flyte-state",
        description="Fold Flyte execution events from Kafka into compacted execution-state topics.",
    )
    parser.add_argument(
        "--bootstrap-servers",
        help="Kafka bootstrap servers, host:port[,host:port]; overrides KAFKA_BOOTSTRAP_SERVERS",
    )
    parser.add_argument("--log-level", default=None, help="log level: DEBUG, INFO, WARNING or ERROR (default INFO)")
    commands = parser.add_subparsers(dest="command", required=True)

    worker = commands.add_parser("worker", help="run the processor until SIGTERM")
    worker.add_argument("--store", choices=["memory", "rocksdb"], help="table store; overrides FLYTE_STATE_STORE")
    worker.set_defaults(handler=command_worker)

    publish = commands.add_parser("publish", help="produce JSON Lines stream files to the input topics")
    publish.add_argument("files", nargs="+", help="stream files; - reads standard input")
    publish.add_argument(
        "--format",
        choices=["binary", "cloudevents-v1", "cloudevents-v2"],
        default="binary",
        help="binary: protobuf to the input topics (default); cloudevents-v1, cloudevents-v2: FlyteAdmin's "
        "CloudEvents of that version to FLYTE_STATE_TOPIC_CLOUDEVENTS",
    )
    publish.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="show a progress bar with events per second on stderr (default: when stderr is a terminal)",
    )
    publish.set_defaults(handler=command_publish)

    state = commands.add_parser("state", help="print the current state read from the state topics")
    state.add_argument("execution", nargs="?", help="execution key [org/]project:domain:name to show in detail")
    state.add_argument("--json", action="store_true", help="print one JSON object per state record")
    state.add_argument("--timeout", type=positive_seconds, default=30.0, help="seconds to read before printing (default 30)")
    state.set_defaults(handler=command_state)

    check = commands.add_parser("check", help="check the state topics against the facts of *.expect.json files")
    check.add_argument(
        "files", nargs="+", type=Path, help="*.expect.json files, or the *.jsonl streams whose facts lie beside them"
    )
    check.add_argument(
        "--timeout", type=positive_seconds, default=30.0, help="seconds to wait for the facts to hold (default 30)"
    )
    check.set_defaults(handler=command_check)

    dashboard = commands.add_parser("dashboard", help="serve a live web page and JSON API of the state topics")
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    dashboard.add_argument("--port", type=int, default=8080, help="TCP port to listen on (default 8080)")
    dashboard.set_defaults(handler=command_dashboard)

    demo = commands.add_parser("demo", help="run a worker, publish sample streams and print their final state")
    demo.add_argument("--streams", type=Path, help="folder of *.jsonl streams (default ../shared/streams, else examples/streams)")
    demo.add_argument("--timeout", type=positive_seconds, default=180.0, help="seconds to wait for the final state (default 180)")
    demo.set_defaults(handler=command_demo)

    # The benchmark parses its own options. With "+" as the only option prefix,
    # this parser takes no option and passes every argument on.
    bench = commands.add_parser(
        "bench",
        help="measure the worker's throughput, latency and memory; bench --help lists the options",
        add_help=False,
        prefix_chars="+",
    )
    bench.add_argument("options", nargs=argparse.REMAINDER, help="options of python -m processor.benchmark")
    bench.set_defaults(handler=command_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = (args.log_level or os.environ.get("FLYTE_STATE_LOG_LEVEL") or Settings.log_level).upper()
    if not isinstance(logging.getLevelName(level), int):
        print(f"invalid log level {level!r}: use DEBUG, INFO, WARNING or ERROR", file=sys.stderr)
        return 2
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level:
        os.environ["FLYTE_STATE_LOG_LEVEL"] = level
    try:
        return args.handler(args)
    except ConfigError as error:
        log.error("%s", error)
        return 2
    except KafkaException as error:
        log.error("Kafka request failed: %s. Check KAFKA_BOOTSTRAP_SERVERS and that the broker runs.", error.args[0])
        return 2
    except BrokenPipeError:
        # The reader of standard output went away (for example `| head`);
        # point stdout at /dev/null so that the interpreter's final flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
