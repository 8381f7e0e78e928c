// SPDX-License-Identifier: GPL-2.0
//! `cargo xtask test`: host tests, then the kernel with the series applied,
//! booted once to run KUnit and the userspace suites.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::build::{self, Flavour};
use crate::initramfs::{self, Payload, Step};
use crate::results::{self, Case, Outcome, Suite};
use crate::util::{repo_root, stage, target_dir, Context, Result};
use crate::{apply, tree, vm};

/// The whole VM run may take this long before it is stopped.
const VM_LIMIT: Duration = Duration::from_secs(40 * 60);

/// What `test` runs.
#[derive(Debug, Default)]
pub struct Options {
    pub skip_host: bool,
    pub skip_vm: bool,
    /// Extra programs for the VM's `/opt/bin`.
    pub add: Vec<PathBuf>,
    /// Build and boot the KASAN flavour instead of the test flavour.
    pub kasan: bool,
}

/// Runs everything and prints one line per suite and the closing count.
/// Returns whether all passed.
pub fn test(opts: &Options) -> Result<bool> {
    let mut suites = Vec::new();
    if !opts.skip_host {
        suites.extend(stage("host tests (cargo test)", host_tests)?);
    }
    if !opts.skip_vm {
        suites.extend(vm_suites(opts)?);
    }
    Ok(report(&suites))
}

/// Runs `cargo test` on the workspace; one suite per test binary.
fn host_tests() -> Result<Vec<Suite>> {
    let out = Command::new("cargo")
        .current_dir(repo_root())
        .args(["test", "--workspace", "--no-fail-fast", "--color", "never"])
        .stdin(Stdio::null())
        .output()
        .context(|| "cannot run cargo test".into())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    let mut suites = parse_cargo_test(&stderr, &stdout);
    if !out.status.success() && suites.iter().all(Suite::passed) {
        eprint!("{stderr}");
        suites.push(Suite {
            name: "host:cargo".into(),
            problems: vec![format!("cargo test failed ({})", out.status)],
            ..Default::default()
        });
    }
    Ok(suites)
}

/// Pairs cargo's `Running ...` lines (stderr) with its `test result:`
/// lines (stdout), in order.
pub fn parse_cargo_test(stderr: &str, stdout: &str) -> Vec<Suite> {
    let names: Vec<String> = stderr
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("Running ")
                .or_else(|| l.strip_prefix("Doc-tests "))?;
            let name = rest
                .split(" (")
                .last()
                .unwrap_or(rest)
                .trim_end_matches(')');
            let name = Path::new(name)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())?;
            Some(
                name.rsplit_once('-')
                    .map(|(a, _)| a.to_string())
                    .unwrap_or(name),
            )
        })
        .collect();
    let mut suites = Vec::new();
    for (i, l) in stdout
        .lines()
        .filter(|l| l.starts_with("test result:"))
        .enumerate()
    {
        let num = |key: &str| -> usize {
            l.split([';', '.'])
                .find_map(|p| {
                    p.trim()
                        .strip_suffix(key)
                        .and_then(|n| n.trim().parse().ok())
                })
                .unwrap_or(0)
        };
        let mut s = Suite {
            name: format!(
                "host:{}",
                names.get(i).cloned().unwrap_or_else(|| i.to_string())
            ),
            ..Default::default()
        };
        for (o, n) in [
            (Outcome::Pass, num(" passed")),
            (Outcome::Fail, num(" failed")),
            (Outcome::Skip, num(" ignored")),
        ] {
            s.cases.extend((0..n).map(|k| Case {
                name: k.to_string(),
                outcome: o,
            }));
        }
        s.plan = Some(s.cases.len());
        suites.push(s);
    }
    suites
}

/// Builds the test kernel with the series and runs the VM suites.
fn vm_suites(opts: &Options) -> Result<Vec<Suite>> {
    let repo = repo_root();
    let tree = stage("kernel tree", || tree::worktree("work"))?;
    stage("apply series", || apply::reapply(&tree, &repo))?;
    let flavour = if opts.kasan {
        Flavour::Kasan
    } else {
        Flavour::Test
    };
    let out = stage(&format!("configure ({} flavour)", flavour.name()), || {
        build::configure(&tree, &repo, flavour)
    })?;
    let kernel = stage(
        &format!("build kernel ({} flavour)", flavour.name()),
        || build::build_kernel(&tree, &out),
    )?;
    let mut payload: Payload = build::guest_programs(&tree, &out, &repo)?;
    payload.extend(added(&opts.add)?);
    let steps = vm_steps();
    let dir = target_dir().join("vm");
    std::fs::create_dir_all(&dir)?;
    let initrd = stage("initramfs", || initramfs::build(&dir, &steps, &payload))?;
    let log = dir.join("console.log");
    let boot = stage("boot VM and run suites", || {
        vm::boot(&kernel, &initrd, VM_LIMIT, false, &log)
    })?;
    eprintln!("    console log: {}", log.display());
    let mut suites = evaluate(&boot, &steps, EXPECTED_KUNIT, MIN_CASES);
    if !opts.kasan {
        suites.push(stage("compile converted drivers", || {
            drivers_suite(&tree, &repo)
        })?);
    }
    Ok(suites)
}

/// The drivers the series converts, each object compiled alone against it.
fn drivers_suite(tree: &Path, repo: &Path) -> Result<Suite> {
    let out = build::configure(tree, repo, Flavour::Drivers)?;
    let mut suite = Suite {
        name: "compile:drivers".into(),
        ..Default::default()
    };
    for (obj, why) in build::compile_drivers(tree, &out)? {
        if let Some(why) = &why {
            suite.problems.push(format!("{obj} {why}"));
        }
        suite.cases.push(Case {
            name: obj,
            outcome: if why.is_none() {
                Outcome::Pass
            } else {
                Outcome::Fail
            },
        });
    }
    suite.plan = Some(suite.cases.len());
    Ok(suite)
}

/// The debugfs file that chooses the migrate_device engine.
const ENGINE: &str = "/sys/kernel/debug/migrate_device/engine";
/// The debugfs file of the Rust engine's counters.
const COUNTERS: &str = "/sys/kernel/debug/migrate_device/counters";
/// The exit status of a kselftest program that skipped (kselftest.h's
/// `KSFT_SKIP`, from `ksft_exit_skip()`).
const KSFT_SKIP: i32 = 4;

/// The userspace suites: the upstream hmm-tests, unmodified, under each
/// engine with the Rust engine's counters checked after each run, then the
/// exact counters of a fixed workload, NUMA moves of device-private
/// memory, the differential test of the two engines, the fault livelock
/// test, the 2 MiB fault with and without a free 2 MiB page, mTHPs of
/// every size to the device and back, pinned and shared pages in a run,
/// faults racing with an eviction, the VRAM driver, and a seeded random
/// stress of it all.
pub fn vm_steps() -> Vec<Step> {
    let mut steps = Vec::new();
    for engine in ["c", "rust", "rust-entry"] {
        steps.push(Step {
            name: format!("hmm-tests:{engine}"),
            command: format!(
                "echo {engine} > {ENGINE} && echo 0 > {COUNTERS} && echo 0 > {COUNTERS}_c && hmm-tests"
            ),
            timeout_secs: 1500,
        });
        steps.push(Step {
            name: format!("engine-counters:{engine}"),
            command: format!("engine_counters {engine}"),
            timeout_secs: 60,
        });
    }
    steps.push(Step {
        name: "counted-work".into(),
        command: "counted_work".into(),
        timeout_secs: 120,
    });
    steps.push(Step {
        name: "numa-moves".into(),
        command: "numa_moves".into(),
        timeout_secs: 300,
    });
    steps.push(Step {
        name: "differential".into(),
        command: "differential".into(),
        timeout_secs: 600,
    });
    steps.push(Step {
        name: "fault-livelock".into(),
        command: "fault_livelock".into(),
        timeout_secs: 600,
    });
    steps.push(Step {
        name: "thp-fault".into(),
        command: "thp_fault".into(),
        timeout_secs: 300,
    });
    steps.push(Step {
        name: "mthp".into(),
        command: "mthp".into(),
        timeout_secs: 900,
    });
    steps.push(Step {
        name: "pinned".into(),
        command: "pinned".into(),
        timeout_secs: 300,
    });
    steps.push(Step {
        name: "vram".into(),
        command: "vram".into(),
        timeout_secs: 600,
    });
    steps.push(Step {
        name: "bad-input".into(),
        command: "bad_input".into(),
        timeout_secs: 300,
    });
    steps.push(Step {
        name: "upstream-fixes".into(),
        command: "upstream_fixes".into(),
        timeout_secs: 600,
    });
    steps.push(Step {
        name: "evict-race".into(),
        command: "evict_race".into(),
        timeout_secs: 600,
    });
    steps.push(Step {
        name: "stress".into(),
        command: "stress --seconds 8".into(),
        timeout_secs: 300,
    });
    steps
}

/// The KUnit suites the test kernel must run, each with the fewest cases
/// it has: a suite lost to a config typo, or a case lost from one, fails
/// the run instead of passing unseen.
pub const EXPECTED_KUNIT: &[(&str, usize)] = &[
    ("migrate_core", 14),
    ("folio_migrate_bindings", 7),
    ("folio_migrate_migrate_vma", 4),
    ("folio_migrate_pagemap", 5),
    ("folio_migrate_device", 2),
    ("folio_migrate_extent_walk", 2),
    ("folio_migrate_vram_chunks", 5),
    ("folio_migrate_vram", 3),
];

/// The fewest results (passed, failed or skipped) each userspace step
/// reports; a step that prints a shorter plan fails.
pub const MIN_CASES: &[(&str, usize)] = &[
    ("hmm-tests:c", 78),
    ("hmm-tests:rust", 78),
    ("hmm-tests:rust-entry", 78),
    ("engine-counters:c", 3),
    ("engine-counters:rust", 6),
    ("engine-counters:rust-entry", 7),
    ("counted-work", 8),
    ("numa-moves", 18),
    ("differential", 26),
    ("fault-livelock", 9),
    ("thp-fault", 6),
    ("mthp", 294),
    ("pinned", 15),
    ("vram", 54),
    ("bad-input", 21),
    ("upstream-fixes", 24),
    ("evict-race", 6),
    ("stress", 3),
];

/// Adds a problem to `suite` if it has fewer than `min` results.
fn check_min_cases(suite: &mut Suite, min: usize) {
    if suite.cases.len() < min {
        suite.problems.push(format!(
            "{} results, expected at least {min}",
            suite.cases.len()
        ));
    }
}

/// `--add PATH` files, placed in the guest's `/opt/bin`.
pub fn added(paths: &[PathBuf]) -> Result<Payload> {
    paths
        .iter()
        .map(|p| {
            let name = p
                .file_name()
                .ok_or_else(|| crate::util::Error(format!("{} names no file", p.display())))?;
            Ok((p.clone(), format!("/opt/bin/{}", name.to_string_lossy())))
        })
        .collect()
}

/// Results of one boot: KUnit suites, each step, and the kernel log.
/// `kunit` lists the KUnit suites that must have run and `min_cases` the
/// fewest results of a step, each with its minimum case count.
pub fn evaluate(
    boot: &vm::Boot,
    steps: &[Step],
    kunit: &[(&str, usize)],
    min_cases: &[(&str, usize)],
) -> Vec<Suite> {
    let mut suites: Vec<Suite> = results::parse_ktap(boot.boot_lines.iter().map(String::as_str))
        .into_iter()
        .map(|mut s| {
            s.name = format!("kunit:{}", s.name);
            s
        })
        .collect();
    if suites.is_empty() {
        suites.push(Suite {
            name: "kunit".into(),
            problems: vec!["no KUnit suite ran".into()],
            ..Default::default()
        });
    }
    for &(name, min) in kunit {
        let full = format!("kunit:{name}");
        match suites.iter_mut().find(|s| s.name == full) {
            Some(s) => check_min_cases(s, min),
            None => suites.push(Suite {
                name: full,
                problems: vec!["expected KUnit suite did not run".into()],
                ..Default::default()
            }),
        }
    }
    for st in steps {
        let got = boot.steps.iter().find(|o| o.name == st.name);
        let mut s = match got {
            Some(o) => results::parse_kselftest(&st.name, &o.output),
            None => Suite {
                name: st.name.clone(),
                ..Default::default()
            },
        };
        match got.and_then(|o| o.status) {
            None => s
                .problems
                .push("did not finish (crash or VM time limit)".into()),
            Some(137) => s
                .problems
                .push(format!("killed after its {} s limit", st.timeout_secs)),
            Some(0) => {}
            // ksft_exit_skip() before any plan: the whole suite skipped.
            Some(KSFT_SKIP) if s.skipped.is_some() => {}
            Some(rc) => s.problems.push(format!("exit status {rc}")),
        }
        if let Some(&(_, min)) = min_cases.iter().find(|(n, _)| *n == st.name) {
            check_min_cases(&mut s, min);
        }
        suites.push(s);
    }
    let log: Vec<&str> = boot
        .dmesg
        .as_ref()
        .unwrap_or(&boot.console)
        .iter()
        .map(String::as_str)
        .collect();
    let mut k = Suite {
        name: "kernel-log".into(),
        plan: Some(1),
        ..Default::default()
    };
    let reports = results::kernel_reports(log);
    if !boot.finished {
        k.problems.push(if boot.timed_out {
            "VM time limit reached".into()
        } else {
            "VM stopped before init finished".into()
        });
    }
    if reports.is_empty() {
        k.cases.push(Case {
            name: "no oops/BUG/WARN/lockdep/KASAN".into(),
            outcome: Outcome::Pass,
        });
    } else {
        k.cases.push(Case {
            name: "kernel reports".into(),
            outcome: Outcome::Fail,
        });
        k.problems.extend(reports.into_iter().take(20));
    }
    suites.push(k);
    suites
}

/// Prints a line per suite and the closing `N passed, N failed, N skipped`.
pub fn report(suites: &[Suite]) -> bool {
    let (mut p, mut f, mut s) = (0, 0, 0);
    println!();
    for suite in suites {
        let (sp, sf, ss) = (
            suite.count(Outcome::Pass),
            suite.count(Outcome::Fail),
            suite.count(Outcome::Skip),
        );
        // A suite that failed with no failed case (missing results, crash) counts once.
        let extra = usize::from(sf == 0 && !suite.problems.is_empty());
        p += sp;
        f += sf + extra;
        s += ss;
        let verdict = if suite.passed() { "ok  " } else { "FAIL" };
        println!(
            "{verdict} {:<40} {sp} passed, {sf} failed, {ss} skipped",
            suite.name
        );
        for c in suite.cases.iter().filter(|c| c.outcome == Outcome::Fail) {
            println!("       failed: {}", c.name);
        }
        for pr in &suite.problems {
            println!("       {pr}");
        }
    }
    crate::util::print_stage_times();
    println!("{p} passed, {f} failed, {s} skipped");
    f == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_output_becomes_suites() {
        let stderr = "   Compiling x\n     Running unittests src/lib.rs (target/debug/deps/migrate_core-0123abcd)\n\
                      \x20    Running tests/props.rs (target/debug/deps/props-99)\n   Doc-tests migrate_core\n";
        let stdout = "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\
                      test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured\n\
                      test result: ok. 0 passed; 0 failed; 0 ignored\n";
        let s = parse_cargo_test(stderr, stdout);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "host:migrate_core");
        assert_eq!(
            (s[0].count(Outcome::Pass), s[0].count(Outcome::Skip)),
            (12, 1)
        );
        assert_eq!(s[1].name, "host:props");
        assert!(!s[1].passed());
        assert_eq!(s[2].name, "host:migrate_core");
        assert!(s[2].passed());
    }

    #[test]
    fn missing_step_and_warning_fail() {
        let boot = vm::split(
            "    # Subtest: a\n    1..1\n    ok 1 t\nok 1 a\n@@fm boot-done\n@@fm begin hmm-tests\n1..1\nok 1 x\n\
             @@fm end hmm-tests 0 1 1\n@@fm dmesg-begin\n[ 1.0] WARNING: CPU: 1 PID: 1 at mm/x.c:1 f\n@@fm dmesg-end\n@@fm done\n"
                .lines()
                .map(String::from)
                .collect(),
        );
        let steps = vec![
            Step {
                name: "hmm-tests".into(),
                command: "hmm-tests".into(),
                timeout_secs: 1,
            },
            Step {
                name: "other".into(),
                command: "other".into(),
                timeout_secs: 1,
            },
        ];
        let s = evaluate(&boot, &steps, &[("a", 1)], &[("hmm-tests", 1)]);
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["kunit:a", "hmm-tests", "other", "kernel-log"]);
        assert!(s[0].passed() && s[1].passed());
        assert!(!s[2].passed(), "a step that never ran fails");
        assert!(!s[3].passed(), "a WARN fails the run");
    }

    #[test]
    fn missing_kunit_suite_and_short_plans_fail() {
        let boot = vm::split(
            "    # Subtest: a\n    1..1\n    ok 1 t\nok 1 a\n@@fm boot-done\n@@fm begin x\n1..1\nok 1 y\n\
             @@fm end x 0 1 1\n@@fm done\n"
                .lines()
                .map(String::from)
                .collect(),
        );
        let steps = vec![Step {
            name: "x".into(),
            command: "x".into(),
            timeout_secs: 1,
        }];
        let s = evaluate(&boot, &steps, &[("a", 2), ("b", 1)], &[("x", 2)]);
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["kunit:a", "kunit:b", "x", "kernel-log"]);
        assert!(!s[0].passed(), "a KUnit suite with too few cases fails");
        assert!(!s[1].passed(), "a missing KUnit suite fails");
        assert!(!s[2].passed(), "a step with too few results fails");
    }

    #[test]
    fn skip_status_only_with_a_skipped_plan() {
        let boot = vm::split(
            "    # Subtest: a\n    1..1\n    ok 1 t\nok 1 a\n@@fm boot-done\n\
             @@fm begin skipped\nTAP version 13\n1..0 # SKIP no engine switch\n@@fm end skipped 4 1 1\n\
             @@fm begin planned\nTAP version 13\n1..1\nok 1 # SKIP no THP\n@@fm end planned 4 1 1\n\
             @@fm begin none\nTAP version 13\n@@fm end none 4 1 1\n\
             @@fm begin failed\nTAP version 13\n1..0 # SKIP no device\n@@fm end failed 1 1 1\n\
             @@fm begin passed\nTAP version 13\n1..0 # SKIP no device\n@@fm end passed 0 1 1\n\
             @@fm done\n"
                .lines()
                .map(String::from)
                .collect(),
        );
        let steps: Vec<Step> = ["skipped", "planned", "none", "failed", "passed"]
            .into_iter()
            .map(|n| Step {
                name: n.into(),
                command: n.into(),
                timeout_secs: 1,
            })
            .collect();
        let s = evaluate(&boot, &steps, &[("a", 1)], &[]);
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "kunit:a",
                "skipped",
                "planned",
                "none",
                "failed",
                "passed",
                "kernel-log"
            ]
        );
        assert!(s[1].passed(), "{:?}", s[1].problems);
        assert_eq!(s[1].count(Outcome::Skip), 1);
        assert!(!s[2].passed(), "status 4 after a plan of 1..1 fails");
        assert_eq!(s[2].problems, ["exit status 4"]);
        assert!(!s[3].passed(), "status 4 without a plan fails");
        assert!(s[3].problems.iter().any(|p| p == "exit status 4"));
        assert!(!s[4].passed(), "a skipped plan does not excuse status 1");
        assert!(s[5].passed(), "{:?}", s[5].problems);
    }
}
