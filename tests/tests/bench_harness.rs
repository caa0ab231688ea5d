//! Self-test of the benchmark harness `bench/lib.sh`: timing, peak RSS, alternation, medians
//! and ratios, on small commands (the real benchmarks are scripts, not tests).

use std::fs;
use std::path::PathBuf;

use anyhow::{ensure, Result};
use ferry_tests::Tool;
use tempfile::TempDir;

fn lib_sh() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/lib.sh")
}

fn bench_bash(dir: &TempDir, script: &str) -> Result<String> {
    let full = format!(". '{}'\nset -e\n{script}", lib_sh().display());
    Ok(Tool::new("bash")
        .arg("-c")
        .arg(full)
        .env("BENCH_DIR", dir.path())
        .env("BENCH_DROP", "0")
        .stdout()?)
}

#[test]
fn times_commands_measures_peak_rss_and_alternates_cases() -> Result<()> {
    let dir = TempDir::new()?;
    fs::create_dir_all(dir.path().join("results"))?;
    let out = bench_bash(
        &dir,
        r#"
        setup_small() { echo small >> "$BENCH_DIR/order"; }
        run_small() { bench_time small head -c 1000 /dev/zero; }
        setup_big() { echo big >> "$BENCH_DIR/order"; }
        run_big() { bench_time big perl -e '$x = "a" x (96 * 1024 * 1024); print length($x)'; }
        bench_alternate 3 small big
        echo "rss_small=$(bench_peak_rss_mib small)"
        echo "rss_big=$(bench_peak_rss_mib big)"
        bench_report small big
        "#,
    )?;
    let order = fs::read_to_string(dir.path().join("order"))?;
    ensure!(
        order.split_whitespace().collect::<Vec<_>>()
            == ["small", "big", "big", "small", "small", "big"],
        "cases did not alternate: {order}"
    );
    for case in ["small", "big"] {
        let rows = fs::read_to_string(dir.path().join(format!("results/{case}.tsv")))?;
        ensure!(rows.lines().count() == 3, "{case}: {rows}");
        for row in rows.lines() {
            let cols: Vec<&str> = row.split('\t').collect();
            ensure!(cols.len() == 3 && cols[2] == "0", "bad row {row:?}");
            ensure!(cols[0].parse::<f64>()? >= 0.0);
        }
    }
    let value = |key: &str| -> Result<f64> {
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .ok_or_else(|| anyhow::anyhow!("{key} missing in:\n{out}"))?;
        Ok(line.parse()?)
    };
    let (small, big) = (value("rss_small=")?, value("rss_big=")?);
    ensure!(
        big >= 96.0,
        "peak RSS of a 96 MiB allocation reported as {big} MiB"
    );
    ensure!(small < 16.0, "peak RSS of `head` reported as {small} MiB");
    ensure!(
        out.contains("case") && out.lines().any(|l| l.starts_with("big ")),
        "{out}"
    );
    let output = fs::read_to_string(dir.path().join("results/big.1.out"))?;
    ensure!(output.trim() == (96 * 1024 * 1024).to_string(), "{output}");
    Ok(())
}

#[test]
fn medians_ratios_and_failures() -> Result<()> {
    let dir = TempDir::new()?;
    let results = dir.path().join("results");
    fs::create_dir_all(&results)?;
    fs::write(
        results.join("odd.tsv"),
        "3.0\t100\t0\n1.0\t300\t0\n2.0\t200\t0\n",
    )?;
    fs::write(
        results.join("even.tsv"),
        "1.0\t1\t0\n10.0\t1\t0\n2.0\t1\t0\n3.0\t1\t0\n",
    )?;
    fs::write(
        results.join("mixed.tsv"),
        "1.0\t1\t0\n2.0\t1\t1\n3.0\t1\t0\n4.0\t1\t124\n",
    )?;
    let out = bench_bash(
        &dir,
        r#"
        echo "odd=$(bench_median odd)"
        echo "even=$(bench_median even)"
        echo "rss=$(bench_median odd 2)"
        echo "ratio=$(bench_ratio odd even)"
        if bench_time failing false; then echo "failure not reported"; fi
        echo "failing=$(cut -f3 "$BENCH_DIR/results/failing.tsv")"
        echo "failures_odd=$(bench_failures odd)"
        echo "failures_mixed=$(bench_failures mixed)"
        echo "failures_failing=$(bench_failures failing)"
        "#,
    )?;
    for expected in [
        "odd=2.000",
        "even=2.500",
        "rss=200.000",
        "ratio=0.80",
        "failing=1",
        "failures_odd=0",
        "failures_mixed=2",
        "failures_failing=1",
    ] {
        ensure!(
            out.lines().any(|l| l == expected),
            "missing {expected} in:\n{out}"
        );
    }
    ensure!(!out.contains("failure not reported"));
    Ok(())
}

#[test]
fn sync_inside_the_timing_keeps_status_output_and_peak_rss() -> Result<()> {
    let dir = TempDir::new()?;
    fs::create_dir_all(dir.path().join("results"))?;
    let out = bench_bash(
        &dir,
        r#"
        BENCH_SYNC=1
        bench_time big perl -e '$x = "a" x (96 * 1024 * 1024); print length($x)'
        if bench_time failing sh -c 'echo partial; exit 7'; then echo "failure not reported"; fi
        echo "rss_big=$(bench_peak_rss_mib big)"
        echo "status=$(cut -f3 "$BENCH_DIR/results/failing.tsv")"
        "#,
    )?;
    ensure!(!out.contains("failure not reported"), "{out}");
    ensure!(out.lines().any(|l| l == "status=7"), "{out}");
    let rss: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("rss_big="))
        .ok_or_else(|| anyhow::anyhow!("no rss in:\n{out}"))?
        .parse()?;
    ensure!(rss >= 96.0, "peak RSS through sh reported as {rss} MiB");
    let output = fs::read_to_string(dir.path().join("results/big.1.out"))?;
    ensure!(output.trim() == (96 * 1024 * 1024).to_string(), "{output}");
    let output = fs::read_to_string(dir.path().join("results/failing.1.out"))?;
    ensure!(output.trim() == "partial", "{output}");
    // The sync runs under /usr/bin/time, after the command.
    let timed = fs::read_to_string(dir.path().join("results/big.1.time"))?;
    let command = timed
        .lines()
        .find(|l| l.contains("Command being timed"))
        .unwrap_or_default();
    ensure!(
        command.contains("sync") && command.contains("perl"),
        "{timed}"
    );
    Ok(())
}

#[test]
fn limits_read_every_object_and_write_the_tree_then_clean_up() -> Result<()> {
    let dir = TempDir::new()?;
    fs::create_dir_all(dir.path().join("results"))?;
    let repo = dir.path().join("repo");
    let tree = dir.path().join("tree");
    fs::create_dir_all(repo.join("objects/ab"))?;
    fs::create_dir_all(tree.join("sub"))?;
    fs::write(repo.join("objects/ab/cdef.filez"), vec![7u8; 5000])?;
    fs::write(tree.join("sub/file"), vec![9u8; 3000])?;
    let shm_tars = || -> Result<usize> {
        Ok(fs::read_dir("/dev/shm")?
            .filter_map(Result::ok)
            .filter(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("ferry-bench-tree.")
            })
            .count())
    };
    let tars_before = shm_tars()?;
    let out = bench_bash(
        &dir,
        &format!(
            r#"
            BENCH_RUNS=2
            run_pull() {{ bench_time pull sleep 0.3; }}
            bench_alternate 1 pull
            bench_limits '{}' '{}'
            echo "closeness=$(bench_closeness pull)"
            echo "closeness to both=$(bench_closeness pull read_write_limit)"
            echo "discarded=$(ls "$BENCH_DIR/discarded" | wc -l)"
            echo "written copies=$(ls "$BENCH_DIR"/discarded/*/sub/file | wc -l)"
            bench_report pull >/dev/null
            echo "discarded after report=$(ls "$BENCH_DIR/discarded" 2>/dev/null | wc -l)"
            "#,
            repo.display(),
            tree.display()
        ),
    )?;
    for case in [
        "read_limit",
        "read_limit_parallel",
        "write_limit",
        "read_write_limit",
    ] {
        let rows = fs::read_to_string(dir.path().join(format!("results/{case}.tsv")))?;
        ensure!(rows.lines().count() == 2, "{case}: {rows}");
        ensure!(
            rows.lines().all(|row| row.ends_with("\t0")),
            "{case} failed: {rows}"
        );
    }
    ensure!(
        !dir.path().join("write_limit").exists(),
        "the written copy was left behind"
    );
    ensure!(shm_tars()? <= tars_before, "the tar was left in /dev/shm");
    // Each run's copy is set aside, not deleted, until the timed runs are over (a deletion
    // would slow the next run's inode allocation); bench_report deletes them.
    ensure!(
        out.lines().any(|l| l == "discarded=4"),
        "two written copies of each writing case should wait in discarded/:\n{out}"
    );
    ensure!(
        out.lines().any(|l| l == "written copies=4"),
        "every written copy should hold the tree:\n{out}"
    );
    ensure!(
        out.lines().any(|l| l == "discarded after report=0"),
        "bench_report left the discarded copies:\n{out}"
    );
    for key in ["closeness", "closeness to both"] {
        let closeness: f64 = out
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .ok_or_else(|| anyhow::anyhow!("no {key} in:\n{out}"))?
            .parse()?;
        ensure!(
            closeness > 1.0,
            "{key}: a 0.3 s run against tiny limits: {closeness}"
        );
    }
    Ok(())
}
