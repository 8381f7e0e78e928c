// SPDX-License-Identifier: GPL-2.0
//! `cargo xtask bench`: the bench kernel flavour booted to run the
//! benchmark programs: upstream hmm-tests' `benchmark_thp_migration`, then
//! each program of `benchmarks/`, every figure under both migrate_device
//! engines. Outputs are printed and saved under `target/bench/`, with the
//! `@json` lines of our programs as JSON lines and a PNG plot of the
//! throughput drawn from them.

use std::time::Duration;

use crate::build::{self, Flavour};
use crate::initramfs::{self, Step};
use crate::util::{repo_root, stage, target_dir, Result};
use crate::{apply, bail, tree, vm};

const BENCH: &str = "hmm.hmm_device_private.benchmark_thp_migration";
const ENGINE: &str = "/sys/kernel/debug/migrate_device/engine";

/// Runs the benchmarks; `quick` skips upstream's table and passes
/// `--quick` to our programs, for a run of a few minutes. With
/// [`vm::Clock::Instructions`] every time the programs print is a count of
/// guest instructions (1 ns each), saved under `target/bench-icount/`.
pub fn bench(quick: bool, clock: vm::Clock) -> Result<()> {
    let repo = repo_root();
    let tree = stage("kernel tree", || tree::worktree("work"))?;
    stage("apply series", || apply::reapply(&tree, &repo))?;
    let out = stage("configure (bench flavour)", || {
        build::configure(&tree, &repo, Flavour::Bench)
    })?;
    let kernel = stage("build kernel (bench flavour)", || {
        build::build_kernel(&tree, &out)
    })?;
    let payload = build::guest_programs(&tree, &out, &repo)?;
    let mut steps = Vec::new();
    if !quick {
        // Upstream's table, once per engine (the engine switch exists when
        // the series is applied; its absence fails the step).
        for engine in ["c", "rust"] {
            steps.push(Step {
                name: format!("benchmark_thp_migration:{engine}"),
                command: format!("echo {engine} > {ENGINE} && hmm-tests -r {BENCH}"),
                timeout_secs: 1200,
            });
        }
    }
    for src in build::program_sources(&repo, "benchmarks", "c")? {
        if let Some(name) = src.file_stem() {
            let name = name.to_string_lossy().into_owned();
            let command = if quick {
                format!("{name} --quick")
            } else {
                name.clone()
            };
            // The same figures with the VRAM driver, in the same boot.
            if name == "migrate_throughput" || name == "fault_latency" {
                steps.push(Step {
                    name: format!("{name}:vram"),
                    command: format!("{command} --driver vram"),
                    timeout_secs: 1800,
                });
            }
            steps.push(Step {
                command,
                name,
                timeout_secs: 1800,
            });
        }
    }
    let dir = target_dir().join(match clock {
        vm::Clock::Real => "bench",
        vm::Clock::Instructions => "bench-icount",
    });
    std::fs::create_dir_all(&dir)?;
    let initrd = stage("initramfs", || initramfs::build(&dir, &steps, &payload))?;
    let log = dir.join("console.log");
    let boot = stage("boot VM and run benchmarks", || {
        vm::boot_with_clock(
            &kernel,
            &initrd,
            Duration::from_secs(60 * 60),
            false,
            &log,
            clock,
        )
    })?;
    let mut failed = Vec::new();
    for step in &steps {
        let Some(run) = boot.steps.iter().find(|r| r.name == step.name) else {
            failed.push(format!("{} did not run", step.name));
            continue;
        };
        println!("== {}\n{}", step.name, run.output);
        std::fs::write(dir.join(format!("{}.txt", step.name)), &run.output)?;
        let json: Vec<&str> = run
            .output
            .lines()
            .filter_map(|l| l.strip_prefix("@json "))
            .collect();
        if !json.is_empty() {
            std::fs::write(
                dir.join(format!("{}.jsonl", step.name)),
                json.join("\n") + "\n",
            )?;
        }
        if run.status != Some(0) {
            failed.push(format!("{} failed (status {:?})", step.name, run.status));
        }
    }
    if dir.join("migrate_throughput.jsonl").is_file() {
        match stage("plot", || crate::plot::throughput_png(&dir)) {
            Ok(png) => println!("plot: {}", png.display()),
            Err(e) => failed.push(format!("plot: {e}")),
        }
    }
    crate::util::print_stage_times();
    if !failed.is_empty() {
        bail!("{}; console log: {}", failed.join(", "), log.display());
    }
    Ok(())
}
