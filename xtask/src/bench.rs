// SPDX-License-Identifier: GPL-2.0
//! `cargo xtask bench`: the bench kernel flavour booted to run the
//! benchmark programs. Until our own programs exist it runs upstream
//! hmm-tests' `benchmark_thp_migration` and prints its table.

use std::time::Duration;

use crate::build::{self, Flavour};
use crate::initramfs::{self, Step};
use crate::util::{repo_root, stage, target_dir, Result};
use crate::{apply, bail, tree, vm};

const BENCH: &str = "hmm.hmm_device_private.benchmark_thp_migration";

pub fn bench() -> Result<()> {
    let repo = repo_root();
    let tree = stage("kernel tree", || tree::worktree("work"))?;
    stage("apply series", || apply::reapply(&tree, &repo))?;
    let out = stage("configure (bench flavour)", || {
        build::configure(&tree, &repo, Flavour::Bench)
    })?;
    let kernel = stage("build kernel (bench flavour)", || {
        build::build_kernel(&tree, &out)
    })?;
    let hmm = stage("build hmm-tests", || build::build_hmm_tests(&tree, &out))?;
    let steps = vec![Step {
        name: "benchmark_thp_migration".into(),
        command: format!("hmm-tests -r {BENCH}"),
        timeout_secs: 1200,
    }];
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let initrd = stage("initramfs", || {
        initramfs::build(&dir, &steps, &vec![(hmm, "/opt/tests/hmm-tests".into())])
    })?;
    let log = dir.join("console.log");
    let boot = stage("boot VM and run benchmark", || {
        vm::boot(&kernel, &initrd, Duration::from_secs(30 * 60), false, &log)
    })?;
    let Some(run) = boot.steps.first() else {
        bail!("the benchmark did not run; console log: {}", log.display())
    };
    println!("{}", run.output);
    std::fs::write(dir.join("benchmark_thp_migration.txt"), &run.output)?;
    crate::util::print_stage_times();
    if run.status != Some(0) {
        bail!(
            "the benchmark failed (status {:?}); console log: {}",
            run.status,
            log.display()
        );
    }
    Ok(())
}
