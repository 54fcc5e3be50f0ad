"""The results ledger: records carry what a reader needs to rerun them, and every published table is its rendering."""

import json
import sys
from pathlib import Path

from repo_scripts import load_script
from resnet_cifar_lab.ledger import PUBLISHED as LEDGER
from resnet_cifar_lab.ledger import append, read_ledger, record

ROOT = Path(__file__).resolve().parents[2]
render_tables = load_script("tools/render_tables.py")

NEEDED = {"benchmark", "command", "config_sha256", "git_commit", "machine", "precision", "torch", "seeds", "numbers"}


PRECISIONS = {"bf16", "fp32", "mixed"}  # mixed: the record says which part ran in which (precision_by_*)


def test_every_record_says_how_where_and_when_it_was_measured():
    from resnet_cifar.machine import describe

    records = read_ledger(LEDGER)
    assert records, "the ledger is empty"
    for entry in records:
        assert set(entry) >= NEEDED and entry["date"] and entry["command"], entry
        facts = entry["machine"]
        assert "gpu" in facts or {"cpu", "vendor", "family", "model", "isa", "cores"} <= set(facts), facts
        assert "(R)" not in describe(facts) and "_" not in describe(facts), describe(facts)
        assert entry["precision"] in PRECISIONS, entry["precision"]
        assert entry["precision"] != "mixed" or any(key.startswith("precision_by") for key in entry), entry
        assert not entry["config"] or entry["config_sha256"], f"{entry['benchmark']}: ran {entry['config']} unhashed"


def test_published_tables_are_the_ledger_rendered():
    assert render_tables.stale_pages(read_ledger(LEDGER)) == [], "rerun: python tools/render_tables.py"


def test_appends_at_the_same_moment_each_keep_their_record(tmp_path):
    """Two workers of one study finish nets at once: each reads, extends and renames the file; none may lose the
    other's line."""
    from concurrent.futures import ThreadPoolExecutor

    ledger = tmp_path / "ledger.jsonl"

    def add(worker: int) -> None:
        for index in range(10):
            append({"benchmark": "trial", "numbers": {"worker": worker, "index": index}}, ledger)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(add, range(8)))
    numbers = sorted((e["numbers"]["worker"], e["numbers"]["index"]) for e in read_ledger(ledger))
    assert numbers == [(worker, index) for worker in range(8) for index in range(10)]


def test_a_table_follows_its_records(tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    numbers = {
        name: {"requests_per_s": rate, "p50_ms": 10, "p95_ms": 20, "p99_ms": 30, "health_max_ms": 5}
        for name, rate in (("batching off", 30.0), ("batching on", 150.0))
    }
    append(record("serve_load", numbers, precision="fp32", command=["benchmarks/serve_load.py"]), ledger)
    page = tmp_path / "page.md"
    page.write_text("before\n<!-- table:serve-load -->\nold\n<!-- /table:serve-load -->\nafter\n")
    rendered = render_tables.render(page.read_text(), read_ledger(ledger))
    assert "| 150.0 |" in rendered and "old" not in rendered and rendered.endswith("after\n")
    assert render_tables.stale_pages(read_ledger(ledger), [page]) == [page]
    assert json.loads(ledger.read_text().splitlines()[0])["command"] == "python benchmarks/serve_load.py"


def test_every_live_config_says_what_it_is_for_its_result_and_its_command():
    for config in sorted((ROOT / "configs").glob("*.yaml")):
        header = [line for line in config.read_text().splitlines() if line.startswith("#")]
        assert header and not header[0].startswith("# measured"), f"{config.name}: what is it for?"
        assert any(line.startswith("# measured:") for line in header), f"{config.name}: no measured result"
        commands = ("#   resnet-cifar ", "#   python ", "#   make ")
        assert any(line.startswith(commands) for line in header), f"{config.name}: no command"


def test_a_config_s_measured_lines_follow_its_records(tmp_path):
    config = tmp_path / "configs" / "mine.yaml"
    config.parent.mkdir()
    config.write_text("# for testing\n#   resnet-cifar train --config configs/mine.yaml\n# measured:\nepochs: 1\n")
    numbers = {"test_acc": [0.81, 0.83], "wall_s": [10.0, 12.0], "train_s": [8.0, 9.0]}
    entry = record("repeat_runs", numbers, precision="fp32", seeds=[0, 1], command=["benchmarks/repeat_runs.py"])
    entry["config"] = "configs/mine.yaml"
    rendered = render_tables.render(config.read_text(), [entry], config)
    assert "# measured: 82.00 ± 1.41% test accuracy, 11 ± 1 s whole command, seeds 0, 1;" in rendered
    assert rendered.endswith("epochs: 1\n")


def test_a_finished_sweep_is_recorded_and_rendered_ranked(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import sweep

    ledger = tmp_path / "ledger.jsonl"
    grid = Path("benchmarks/grids/paper-resnets-regularisation.yaml")
    rows = [
        {"name": name, "val_acc": acc, "tta_val_acc": acc + 0.01, "best_val_acc": acc, "epochs": 40,
         "train_s": 9000.0, "wall_s": 1.0, "config": {"seed": 0}, "precision": "fp32"}
        for name, acc in (("modern", 0.9136), ("paper-regularisation", 0.8994))
    ]  # fmt: skip
    sweep.record_sweep(grid, rows, ledger)
    (entry,) = read_ledger(ledger)
    assert entry["benchmark"] == "sweep" and entry["precision"] == "fp32" and entry["seeds"] == [0]
    assert "wall_s" not in entry["numbers"]["candidates"][0]  # a rerun of a finished sweep trains nothing
    table = render_tables.sweep_table(read_ledger(ledger), grid.as_posix())
    assert table[2].startswith("| modern | 91.36% | 92.36% | 40 | 2.5 |") and "paper-regularisation" in table[3]


def test_a_sweep_keeps_every_finished_candidate_in_the_ledger_and_trains_it_only_once(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import sweep

    grid, ledger = tmp_path / "grid.yaml", tmp_path / "ledger.jsonl"
    base = (ROOT / "configs" / "paper-resnets.yaml").as_posix()
    grid.write_text(f"base: {base}\ncandidates:\n  modern: {{}}\n  no-smoothing: {{label_smoothing: 0.0}}\n")
    trained, lost = [], {"no-smoothing"}  # the machine is lost while no-smoothing trains

    def fake_run(config, out, extra, processes):
        trained.append(config.stem)
        if config.stem in lost:
            return {"name": config.stem, "error": ["Interrupted"], "wall_s": 1.0}
        acc = {"modern": 0.91, "no-smoothing": 0.905}[config.stem]
        return {"name": config.stem, "val_acc": acc, "tta_val_acc": acc + 0.01, "best_val_acc": acc, "epochs": 40,
                "train_s": 3600.0, "wall_s": 3600.0, "config": {"seed": 0}, "precision": "bf16"}  # fmt: skip

    monkeypatch.setattr(sweep, "run_candidate", fake_run)

    def sweep_once(*extra, only=()):
        argv = ["sweep.py", str(grid), "--output-dir", str(tmp_path / "out"), "--record", "--ledger", str(ledger)]
        argv += ["--", *extra]
        argv[2:2] = ["--only", *only] if only else []
        monkeypatch.setattr(sys, "argv", argv)
        trained.clear()
        sweep.main()
        return list(trained), [entry["benchmark"] for entry in read_ledger(ledger)]

    assert sweep_once("--threads", "1") == (["modern", "no-smoothing"], ["sweep candidate"])
    grid_name = grid.as_posix()  # as the sweep was given it
    under_way = render_tables.sweep_table(read_ledger(ledger), grid_name)
    assert under_way[2].startswith("| modern | 91.00% | 92.00% | 40 | 1.0 |") and len(under_way) == 7
    assert under_way[4] == "1 of 2 candidates finished so far; the rest are still to run."
    (first,) = read_ledger(ledger)
    other = {"cpu": "AMD EPYC", "vendor": "AMD", "family": 25, "model": 1, "generation": "Zen 3", "isa": "AVX2"}
    first["machine"] |= other  # it finished on another machine
    ledger.write_text(json.dumps(first) + "\n")
    lost.clear()  # a fresh clone on another machine: the finished candidate comes from the ledger
    assert sweep_once("--threads", "2") == (["no-smoothing"], ["sweep candidate", "sweep candidate", "sweep"])
    (table,) = [entry for entry in read_ledger(ledger) if entry["benchmark"] == "sweep"]
    assert [row["name"] for row in table["numbers"]["candidates"]] == ["modern", "no-smoothing"]
    assert table["precision"] == "bf16" and table["seeds"] == [0]
    rendered = render_tables.sweep_table(read_ledger(ledger), grid_name)  # each candidate where it ran
    assert rendered[0].endswith("| machine, precision, date |")
    assert "AMD EPYC Zen 3 (family 25 model 1), AVX2" in rendered[2]
    assert "family 25 model 1" not in rendered[3] and rendered[-1].startswith("seed 0, ")  # the other: here
    assert sweep_once() == ([], ["sweep candidate", "sweep candidate", "sweep"])  # finished: nothing new
    assert sweep_once("--label-smoothing", "0.05")[0] == ["modern", "no-smoothing"]  # another recipe: trained anew
    grid.write_text(grid.read_text().replace("label_smoothing: 0.0", "label_smoothing: 0.2"))
    assert sweep_once()[0] == ["no-smoothing"]  # a candidate whose options changed is trained again
    assert sweep_once(only=["no-smoothing"])[0] == []  # the ledger's other candidates are no concern of --only
    grid.write_text(grid.read_text().replace("  modern: {}\n", ""))
    assert sweep_once()[0] == []  # nor is a candidate that has left the grid


def test_a_seeds_round_joins_its_candidates_to_the_round_they_repeat():
    def candidate(grid, name, seed, acc):
        row = {"name": name, "val_acc": acc, "tta_val_acc": acc + 0.01}
        machine = {"cpu": "AMD EPYC (family 26 model 2)", "isa": "AVX512_BF16", "cores": 2}
        return {"benchmark": "sweep candidate", "seeds": [seed], "precision": "bf16", "command": f"python sweep {grid}",
                "machine": machine, "numbers": {"grid": grid, "candidate": row}}  # fmt: skip

    records = [
        candidate("r2.yaml", "modern", 0, 0.91),
        candidate("r2.yaml", "no-nesterov", 0, 0.912),
        candidate("other.yaml", "modern", 0, 0.5),  # another grid's candidate of the same name: not joined
        candidate("r2-seeds.yaml", "modern-seed1", 1, 0.916),
        candidate("r2-seeds.yaml", "modern-seed2", 2, 0.916) | {"command": "python sweep r2-seeds.yaml --only x"},
    ]
    table = render_tables.seed_spread(records, ["r2.yaml", "r2-seeds.yaml"])
    assert table[2] == "| modern | 0, 1, 2 | 91.40 ± 0.35% | 92.40 ± 0.35% |"  # best mean first
    assert table[3] == "| no-nesterov | 0 | 91.20% | 92.20% |"
    assert len(table) == 6 and table[5].endswith(
        ": `python sweep r2.yaml`; `python sweep r2-seeds.yaml`; `python sweep r2-seeds.yaml --only x`"
    )
    whole = {"benchmark": "sweep", "command": "python sweep r2-seeds.yaml", "numbers": {"grid": "r2-seeds.yaml"}}
    table = render_tables.seed_spread([*records, whole], ["r2.yaml", "r2-seeds.yaml"])
    assert table[5].endswith(": `python sweep r2.yaml`; `python sweep r2-seeds.yaml`")  # the whole sweep's command
    assert render_tables.seed_spread([], ["r2.yaml"]) == ["(no candidate of r2.yaml in the ledger)"]


def _net_record(settings, net: str, seed: int, error: float, train_error: float, where: str) -> dict:
    from resnet_cifar.experiments import depth
    from resnet_cifar_lab.depth_study import NET_RECORD

    result = {"net": net, "seed": seed, "test_error": error, "test_error_tta": error - 0.005, "epochs": 40,
              "train_seconds": 3600.0, "train_error_per_epoch": [0.5, train_error],
              "hours_by_machine": {where: 1.0}}  # fmt: skip
    entry = {"config": depth.net_fingerprint(settings, net, seed), "result": result}
    return record(NET_RECORD, entry, precision="bf16", seeds=[seed])


def test_table6_puts_single_view_beside_the_paper_and_the_plain_nets_beside_their_twins(tmp_path):
    from resnet_cifar.experiments.depth import run_name, study_runs
    from resnet_cifar.experiments.settings import DepthSettings

    settings = DepthSettings(config=str(ROOT / "configs" / "paper-resnets.yaml"))
    ledger, zen3 = tmp_path / "ledger.jsonl", "AMD EPYC Zen 3 (family 25 model 1), AVX2, 2 threads"
    for net, seed, error, train_error in (("resnet20", 0, 0.0929, 0.05), ("resnet20", 1, 0.0911, 0.05),
                                          ("resnet110", 0, 0.065, 0.02), ("plain20", 0, 0.10, 0.06),
                                          ("plain56", 0, 0.14, 0.12)):  # fmt: skip
        append(_net_record(settings, net, seed, error, train_error, zen3), ledger)
    whole_study = {"nets": {run_name(net, seed): {} for net, seed in study_runs(settings)}}
    append(record("experiment depth", whole_study, precision="bf16", seeds=[0, 1], command=["study"]), ledger)
    table = render_tables.table6(read_ledger(ledger))
    assert table[0].startswith("| net | seeds | test error %, single view | He et al. 2015 % |")
    assert table[2].startswith("| resnet20 | 0, 1 | 9.20 ± 0.13 | 8.75 | 8.27 | 7.40 | 8.70 ± 0.13 | 40 | 1.00 |")
    assert "| 6.43 (best of 5; mean 6.61 ± 0.16) |" in table[3] and table[3].endswith(f"| {zen3} |")
    assert table[7].startswith("| plain20 | 0 | 6.00 | 10.00 |") and table[8].startswith("| plain56 | 0 | 12.00 |")
    falls = "- ResNets' test error falls with depth (20/110): 9.20 → 6.50%: at every step; steps of 2.70–2.70 points"
    assert any(line.startswith(falls) and "at most 0.13" in line for line in table)
    assert table[-1] == "bf16, seeds 0, 1, each net on the machine its row names: `study`"
    claims = render_tables.depth_thesis(read_ledger(ledger))  # the README's summary, with what each verdict rests on
    assert claims[2].startswith("| ResNets' test error falls with depth | 20 → 110 | 9.20 → 6.50% | at every step |")
    assert claims[3].startswith("| plain nets' training error rises with depth | 20 → 56 | 6.00 → 12.00% | at every")
    assert "one seed per depth" in claims[3]


def test_table6_shows_the_nets_finished_so_far_while_the_study_is_under_way(tmp_path):
    from resnet_cifar.experiments import depth
    from resnet_cifar.experiments.settings import DepthSettings
    from resnet_cifar_lab.depth_study import NET_RECORD

    settings = DepthSettings(config=str(ROOT / "configs" / "paper-resnets.yaml"))
    ledger = tmp_path / "ledger.jsonl"
    assert render_tables.table6([]) == ["(no net of the depth study in the ledger yet)"]
    for net, error, train_error in (("resnet20", 0.09, 0.04), ("plain20", 0.105, 0.06), ("resnet32", 0.081, 0.03)):
        result = {"net": net, "seed": 0, "test_error": error, "test_error_tta": error - 0.01, "epochs": 40,
                  "train_seconds": 3600.0, "train_error_per_epoch": [0.5, train_error],
                  "hours_by_machine": {"Xeon, AMX, bf16, 1 threads": 1.0}}  # fmt: skip
        entry = {"config": depth.net_fingerprint(settings, net, 0), "result": result}
        append(record(NET_RECORD, entry, precision="bf16", seeds=[0]), ledger)
    stale = {"config": {**entry["config"], "epochs": 30.0}, "result": {**result, "net": "resnet44"}}
    append(record(NET_RECORD, stale, precision="bf16", seeds=[0]), ledger)  # another recipe: not counted
    table = render_tables.table6(read_ledger(ledger))
    assert table[2].startswith("| resnet20 | 0 | 9.00 | 8.75 |") and table[3].startswith("| resnet32")
    assert any(
        line.startswith("- ResNets' test error falls with depth (20/32): 9.00 → 8.10%: at every") for line in table
    )
    assert table[-1].startswith("The study so far: 3 of 11 nets (not finished yet: plain32-seed0, resnet44-seed0,")
    # nets finished on one machine kind, precision and day are named together, once
    finished = table[-1].split("each recorded as it finished: ")[1]
    assert finished.startswith("resnet20-seed0, plain20-seed0, resnet32-seed0 on ") and finished.count(", bf16, ") == 1
    assert "resnet44" not in finished  # the record of another recipe
    claims = render_tables.depth_thesis(read_ledger(ledger))
    assert claims[2].startswith("| ResNets' test error falls with depth | 20 → 32 | 9.00 → 8.10% | at every step |")
    assert claims[3].startswith("| plain nets' training error rises with depth | 20 | 6.00% | not yet (fewer than two")
    assert claims[-1].startswith("3 of 11 nets of the study finished so far (40 epochs each;")
    assert "| – | – | not yet (fewer than two depths) |" in render_tables.depth_thesis([])[2]


def test_a_shipped_run_says_where_and_how_long_it_trained(tmp_path):
    from resnet_cifar import run_folder

    ship_weights = load_script("tools/ship_weights.py")
    rows = [run_folder.metrics_row(epoch=epoch, seconds=seconds) for epoch, seconds in ((1, 5400.0), (2, 1800.0))]
    run_folder.write_metrics(tmp_path, rows)
    metadata = {"runtime": {"machine": "Zen 4, AVX512_BF16, 2 cores, 2 torch threads, torch 2.13.0+cpu"}}
    alone = ship_weights.training_record(tmp_path, metadata)
    assert alone["hours"] == 2.0 and render_tables.where_trained({**alone, "precision": "fp32"}) == (
        "2.0 h, fp32, Zen 4, AVX512_BF16, 2 cores, 2 torch threads"
    )
    moved = {**alone, "hours_by_machine": {"Zen 3, AVX2, fp32, 2 threads": 1.5, "Zen 4, fp32": 0.5}}
    assert render_tables.where_trained(moved) == "1.5 h on Zen 3, AVX2, fp32, 2 threads; 0.5 h on Zen 4, fp32"


def test_a_record_names_the_command_a_user_types_not_where_the_venv_keeps_it():
    entry = record("trial", {}, precision="fp32", command=["/x/.venv/bin/resnet-cifar", "experiment", "depth"])
    assert entry["command"] == "resnet-cifar experiment depth"


def test_a_record_leaves_out_where_it_was_recorded_and_names_clone_paths_relative():
    inside = str(ROOT / "outputs" / "fast80")
    argv = ["benchmarks/two_commands.py", "--record", "--ledger", "/tmp/elsewhere.jsonl", "--out", inside]
    entry = record("trial", {}, precision="bf16", command=[*argv, "--ledger=/tmp/x.jsonl"])
    assert entry["command"] == "python benchmarks/two_commands.py --out outputs/fast80"


def test_make_train_s_phases_add_up_to_the_whole_command_and_render_beside_the_previous_recipe(tmp_path):
    side_by_side = load_script("benchmarks/make_train_side_by_side.py")
    timings = {"data_s": 1.0, "setup_s": 0.5, "train_s": 14.0, "validation_s": 0.5, "test_s": 2.0, "pictures_s": 1.0}
    split = side_by_side.phases({**timings, "test_threads": 2}, wall_s=21.0)  # a count among the timings is no phase
    assert split["startup_and_rest_s"] == 2.0 and sum(split.values()) == 21.0
    runs = {
        name: {"wall_s": [wall, wall], "test_acc": [0.81, 0.82], "phases": {k: [v, v] for k, v in phases.items()}}
        for name, wall, phases in (("this", 21.0, split), ("against", 28.0, side_by_side.phases(timings, 28.0)))
    }
    ledger = tmp_path / "ledger.jsonl"
    append(record("make_train_side_by_side", runs, precision="bf16", seeds=[0, 1]), ledger)
    table = render_tables.make_train_phases(read_ledger(ledger))
    now, before = table[2], table[3]
    assert "now: 21.0 s | 2.00 s | 1.00 s" in now and now.endswith("| **33%** |")  # 7 of 21 s is not training
    assert "before: 28.0 s | 9.00 s" in before and before.endswith("| **50%** |")
    without_phases = record("make_train_side_by_side", {"this": {"wall_s": [1.0]}}, precision="bf16")
    assert render_tables.make_train_phases([without_phases]) == table[:2] + table[-2:]  # an older record: no row
