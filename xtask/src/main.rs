// SPDX-License-Identifier: GPL-2.0
//! The folio-migrate harness, run as `cargo xtask COMMAND`.
//!
//! Stages, one module each: setup (toolchain), tree (kernel source and
//! working trees), series/apply (our patchset), build (config, kernel,
//! selftests), initramfs, vm (QEMU), results (KTAP, kselftest, kernel
//! log), and the commands test, bench and export built from them.

mod apply;
mod bench;
mod build;
mod export;
mod initramfs;
mod module_index;
mod plot;
mod profile;
mod results;
mod series;
mod series_build;
mod setup;
mod test;
mod tree;
mod util;
mod vm;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use util::{stage, Result};

const USAGE: &str = "\
usage: cargo xtask COMMAND [OPTIONS]

commands:
  setup                   install the toolchain (apt packages, bindgen, rust-src)
  tree                    fetch linux-source-7.3 and make the working tree
  apply [--tree DIR]      apply the series to DIR (default: the working tree, reset first)
  build [--bench]         configure and build the test (or bench) kernel
  test [--host-only] [--vm-only] [--kasan] [--add PATH]...
                          host tests, then KUnit and userspace suites in the VM
  vm --run CMD [--add PATH]... [--bench|--kasan] [--timeout SECS] [--icount]
     [--profile FUNCTION [--until FUNCTION]... [--per N]]
                          boot the test kernel and run CMD in it; with
                          --profile count the guest instructions per kernel
                          function from each entry into FUNCTION until the
                          next entry into an --until one (per N units)
  bench [--quick] [--icount]
                          run the benchmarks in the bench kernel; with
                          --icount the guest clock counts instructions
  export --out DIR        the series as git format-patch files
  series-build [--from K] [--to K]
                          build every prefix of the series (1..=K), incrementally

Every command but setup runs setup first. The cache (kernel source, trees,
builds) is FOLIO_MIGRATE_CACHE, else $XDG_CACHE_HOME/folio-migrate, else
~/.cache/folio-migrate.
";

struct Args(Vec<String>);

impl Args {
    fn flag(&mut self, name: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|a| a != name);
        before != self.0.len()
    }

    fn values(&mut self, name: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        while let Some(i) = self.0.iter().position(|a| a == name) {
            if i + 1 >= self.0.len() {
                bail!("{name} needs a value");
            }
            out.push(self.0.remove(i + 1));
            self.0.remove(i);
        }
        Ok(out)
    }

    fn value(&mut self, name: &str) -> Result<Option<String>> {
        let mut v = self.values(name)?;
        if v.len() > 1 {
            bail!("{name} given more than once");
        }
        Ok(v.pop())
    }

    fn done(self) -> Result<()> {
        if let Some(a) = self.0.first() {
            bail!("unexpected argument `{a}`\n\n{USAGE}");
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() || argv[0] == "-h" || argv[0] == "--help" || argv[0] == "help" {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let cmd = argv.remove(0);
    match run(&cmd, Args(argv)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            util::print_stage_times();
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: &str, mut args: Args) -> Result<bool> {
    let setup = || stage("setup", setup::setup);
    match cmd {
        "setup" => {
            args.done()?;
            setup()?;
        }
        "tree" => {
            args.done()?;
            setup()?;
            let t = stage("kernel tree", || tree::worktree("work"))?;
            println!("{}", t.display());
        }
        "apply" => {
            let dir = args.value("--tree")?;
            args.done()?;
            setup()?;
            let repo = util::repo_root();
            let n = match dir {
                Some(d) => stage("apply series", || {
                    apply::apply_to(&PathBuf::from(&d), &repo)
                })?,
                None => {
                    let t = stage("kernel tree", || tree::worktree("work"))?;
                    stage("apply series", || apply::reapply(&t, &repo))?
                }
            };
            println!("applied {n} patches");
        }
        "build" => {
            let flavour = if args.flag("--bench") {
                build::Flavour::Bench
            } else {
                build::Flavour::Test
            };
            args.done()?;
            setup()?;
            let repo = util::repo_root();
            let t = stage("kernel tree", || tree::worktree("work"))?;
            stage("apply series", || apply::reapply(&t, &repo))?;
            let out = stage("configure", || build::configure(&t, &repo, flavour))?;
            let k = stage("build kernel", || build::build_kernel(&t, &out))?;
            util::print_stage_times();
            println!("{}", k.display());
        }
        "test" => {
            let opts = test::Options {
                skip_host: args.flag("--vm-only"),
                skip_vm: args.flag("--host-only"),
                kasan: args.flag("--kasan"),
                add: args
                    .values("--add")?
                    .into_iter()
                    .map(PathBuf::from)
                    .collect(),
            };
            args.done()?;
            setup()?;
            return test::test(&opts);
        }
        "vm" => {
            let command = args
                .value("--run")?
                .ok_or_else(|| util::Error(format!("vm needs --run CMD\n\n{USAGE}")))?;
            let add: Vec<PathBuf> = args
                .values("--add")?
                .into_iter()
                .map(PathBuf::from)
                .collect();
            let flavour = if args.flag("--bench") {
                build::Flavour::Bench
            } else if args.flag("--kasan") {
                build::Flavour::Kasan
            } else {
                build::Flavour::Test
            };
            let timeout = match args.value("--timeout")? {
                Some(t) => t
                    .parse::<u64>()
                    .map_err(|_| util::Error(format!("--timeout `{t}` is not seconds")))?,
                None => 1200,
            };
            let clock = clock_flag(&mut args);
            let (from, until) = (args.value("--profile")?, args.values("--until")?);
            let per = args
                .value("--per")?
                .map(|n| {
                    n.parse::<u64>()
                        .map_err(|_| util::Error(format!("--per `{n}` is not a number")))
                })
                .transpose()?;
            if from.is_none() && (!until.is_empty() || per.is_some()) {
                bail!("--until and --per need --profile\n\n{USAGE}");
            }
            let window = from.map(|from| profile::Window { from, until });
            args.done()?;
            setup()?;
            let run = VmRun {
                flavour,
                timeout,
                clock,
                profile: window.map(|w| (w, per.unwrap_or(1))),
            };
            return vm_run(&command, &add, run);
        }
        "bench" => {
            let quick = args.flag("--quick");
            let clock = clock_flag(&mut args);
            args.done()?;
            setup()?;
            bench::bench(quick, clock)?;
        }
        "export" => {
            let out = args
                .value("--out")?
                .ok_or_else(|| util::Error("export needs --out DIR".into()))?;
            args.done()?;
            setup()?;
            let n = stage("export", || export::export(&PathBuf::from(&out)))?;
            println!("{n} patches in {out}");
        }
        "series-build" => {
            let prefix = |v: Option<String>| -> Result<Option<usize>> {
                v.map(|v| {
                    v.parse::<usize>()
                        .map_err(|_| util::Error(format!("`{v}` is not a patch number")))
                })
                .transpose()
            };
            let from = prefix(args.value("--from")?)?;
            let to = prefix(args.value("--to")?)?;
            args.done()?;
            setup()?;
            let ok = series_build::series_build(from, to)?;
            util::print_stage_times();
            return Ok(ok);
        }
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
    Ok(true)
}

/// `--icount`: the guest clock counts instructions.
fn clock_flag(args: &mut Args) -> vm::Clock {
    if args.flag("--icount") {
        vm::Clock::Instructions
    } else {
        vm::Clock::Real
    }
}

/// How `vm` boots: the kernel flavour, the command's timeout in seconds,
/// the guest clock, and what to profile, per how many units.
struct VmRun {
    flavour: build::Flavour,
    timeout: u64,
    clock: vm::Clock,
    profile: Option<(profile::Window, u64)>,
}

/// Boots the kernel and runs one command, printing its output and status.
fn vm_run(command: &str, add: &[PathBuf], run: VmRun) -> Result<bool> {
    let VmRun {
        flavour,
        timeout,
        clock,
        profile,
    } = run;
    let repo = util::repo_root();
    let t = stage("kernel tree", || tree::worktree("work"))?;
    stage("apply series", || apply::reapply(&t, &repo))?;
    let out = stage("configure", || build::configure(&t, &repo, flavour))?;
    let kernel = stage("build kernel", || build::build_kernel(&t, &out))?;
    let mut payload = build::guest_programs(&t, &out, &repo)?;
    payload.extend(test::added(add)?);
    let steps = vec![initramfs::Step {
        name: "run".into(),
        command: command.into(),
        timeout_secs: timeout,
    }];
    let dir = util::target_dir().join("vm-run");
    std::fs::create_dir_all(&dir)?;
    let initrd = stage("initramfs", || initramfs::build(&dir, &steps, &payload))?;
    let log = dir.join("console.log");
    let vmlinux = out.join("vmlinux");
    let (dump, table) = profile::files(&dir);
    let plugin = match &profile {
        Some((window, _)) => {
            // A dump from an earlier run must not pass for this one's.
            let _ = std::fs::remove_file(&dump);
            Some(profile::plugin_arg(&dir, &vmlinux, window, &dump)?)
        }
        None => None,
    };
    let boot = stage("boot VM", || {
        vm::boot_with_plugin(
            &kernel,
            &initrd,
            Duration::from_secs(timeout + 600),
            false,
            &log,
            clock,
            plugin.as_deref(),
        )
    })?;
    let reports = results::kernel_reports(
        boot.dmesg
            .as_ref()
            .unwrap_or(&boot.console)
            .iter()
            .map(String::as_str),
    );
    match boot.steps.first() {
        Some(s) => {
            print!("{}", s.output);
            println!(
                "exit status: {}",
                s.status
                    .map_or("none (did not finish)".to_string(), |c| c.to_string())
            );
        }
        None => println!("the command did not run; console log: {}", log.display()),
    }
    for r in &reports {
        println!("kernel: {r}");
    }
    if let Some((_, per)) = profile {
        profile::report(&vmlinux, &dump, per, 40, &table)?;
    }
    Ok(boot.steps.first().and_then(|s| s.status) == Some(0) && reports.is_empty())
}
