"""`python -m tuner.campaign run | status | next | bill` (the package's doc)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mimic_tf.config import ConfigError, load_config
from tuner.campaign import __doc__ as CAMPAIGN_DOC
from tuner.campaign.bill import bill_rows, bill_table, hours_left
from tuner.campaign.parts import read_plan
from tuner.campaign.runner import Campaign, run_campaign
from tuner.campaign.units import plan_units, status_lines, unit_done


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tuner.campaign",
                                     description=CAMPAIGN_DOC.splitlines()[0])
    parser.add_argument("action", choices=("run", "status", "next", "bill"),
                        help="run the pending units; status: units done of how many (and the "
                        "hours left, with --plan); next: the next unit's name (nothing when "
                        "all are done); bill: the hours spent by stage and machine")
    parser.add_argument("--config", required=True, help="config name in configs/ or path")
    parser.add_argument("--results", required=True, type=Path,
                        help="the campaign's results folder in the repository")
    parser.add_argument("--out", type=Path, default=Path("runs"),
                        help="the run folder's parent, scratch (default: runs/)")
    parser.add_argument("--units", type=int, default=None,
                        help="do at most this many units, then stop (default: all)")
    parser.add_argument("--commit", action="store_true",
                        help="commit each unit's files when it ends")
    parser.add_argument("--workers", type=int, default=1,
                        help="trials side by side in a search, one TensorFlow thread each "
                        "(default 1: one process)")
    parser.add_argument("--oracle-port", type=int, default=27100,
                        help="the chiefs' base port on 127.0.0.1 (search i on base + 100 i)")
    parser.add_argument("--member-bar", type=float, default=0.0,
                        help="stop after member 1 below this test accuracy (default 0: off)")
    parser.add_argument("--plan", type=Path, default=None,
                        help="benchmarks/campaign_plan.py --workers N's output on this "
                        "machine: a search whose rest would take over --max-unit-hours runs "
                        "in parts (default: none, every search is one unit)")
    parser.add_argument("--max-unit-hours", type=float, default=2.0,
                        help="the longest unit the plan may start (default 2.0)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config)
        plan = read_plan(args.plan) if args.plan is not None else None
    except (ConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.action in ("status", "bill"):
        lines = status_lines(config, args.results) if args.action == "status" else []
        bill = bill_rows(args.results)
        spent = sum(row.hours for row in bill)
        if args.action == "bill":
            lines = bill_table(bill)
        else:
            lines.append(f"hours    {spent:.2f} spent (python -m tuner.campaign bill)"
                         + (f", about {hours_left(config, args.results, plan):.2f} left by the "
                            f"plan of {plan['runtime']['cpu']} ({args.plan})" if plan else ""))
        print("\n".join(lines))
        return 0
    if args.action == "next":
        pending = [unit for unit in plan_units(config)
                   if not unit_done(unit, args.results, config.search.trials)]
        if pending:
            print(pending[0].name)
        return 0
    campaign = Campaign(args.config, config, args.results, args.out, workers=args.workers,
                        oracle_port=args.oracle_port, plan=plan,
                        max_unit_hours=args.max_unit_hours)
    return run_campaign(campaign, max_units=args.units, commit=args.commit,
                        member_bar=args.member_bar)


if __name__ == "__main__":
    sys.exit(main())
